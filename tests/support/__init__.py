"""Helpers the tests share: fakes, builders and network helpers (no tests, no fixtures).

- tests/fixtures/ holds the real peers the tests talk to (Prometheus, kmock's Kubernetes emulator, the fake
  NVML library, the fake kubelet) and their pytest fixtures.
- conftest.py files hold fixtures only; the objects a fixture builds are defined here, so a test module
  imports them from here and never imports a conftest.
- A module here is named after what it holds: ``profiles`` (fake power profiles and the strategies that draw
  them), ``planner_inputs`` (configs and observations for the planner), ``scripted_planner``,
  ``live_fakes`` (the live loop's collaborators), ``agent_world`` (the agent's in-memory world),
  ``dynamo_frontend`` (the metrics the live tests' Prometheus scrapes), ``fault_proxy``, ``network``,
  ``kubeconfig``, ``run_cli``, ``repo`` (repository paths, scripts, docs examples), ``dynamo_data``
  (synthetic Dynamo profiler output).

Helpers that only one test directory uses and that build on its peers stay beside it:
tests/integration/agent/harness.py (the agent process), tests/integration/verify/world.py (the installation
`verify` checks), tests/integration/deploy/chart.py (the rendered Helm chart).
"""
