"""`powerplanner profile measure`: a cap sweep on one GPU node against a live endpoint (docs/profile-format.md,
"Measuring a profile on a GPU node"). ``load`` drives the endpoint, ``sweep`` sets the caps and restores the
original limit; the fit is pure, in :mod:`powerplanner.planning.cap_fit`."""
