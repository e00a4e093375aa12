import pytest

from routeflow.controller.main import run


def test_bad_server_address_fails_before_starting_anything():
    with pytest.raises(ValueError, match="bad address"):
        run("bogus:where")
