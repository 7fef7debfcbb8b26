"""The root of the test tree. The helper modules in tests/support/ get pytest's assertion rewriting, so a
failing assert there shows its values as one in a test module does (registered before anything imports them)."""

import pytest

pytest.register_assert_rewrite("tests.support")
