"""routeflow.protocol.auth: keys made private, proofs bound to who, what and when."""

import os
import stat

import pytest

from routeflow.protocol import auth


def test_keys_are_made_once_private_and_read_back(tmp_path):
    keys = auth.ensure_keys(tmp_path / "keys", ["controller", "client-rA"])
    assert set(keys) == {"controller", "client-rA"} and all(len(k) == 32 for k in keys.values())
    assert keys["controller"] != keys["client-rA"]
    path = auth.key_path(tmp_path / "keys", "client-rA")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert auth.ensure_keys(tmp_path / "keys", ["client-rA"]) == {"client-rA": keys["client-rA"]}  # kept


def test_unreadable_keys_say_why(tmp_path):
    with pytest.raises(auth.AuthError, match="cannot read the key of operator"):
        auth.load_key(tmp_path, "operator")
    (tmp_path / "operator.key").write_text("not hex\n")
    with pytest.raises(auth.AuthError, match="holds no key"):
        auth.load_key(tmp_path, "operator")
    (tmp_path / "operator.key").write_text("ab" * 8)
    with pytest.raises(auth.AuthError, match="holds no key"):
        auth.load_key(tmp_path, "operator")


def test_a_proof_holds_only_for_its_key_prover_role_name_and_challenge():
    key, other = bytes(32), bytes(range(32))
    challenge = auth.nonce()
    answer = auth.proof(key, "peer", "client", "rA", challenge)
    assert auth.check(key, answer, "peer", "client", "rA", challenge)
    assert not auth.check(other, answer, "peer", "client", "rA", challenge)
    assert not auth.check(key, answer, "server", "client", "rA", challenge)  # a reflected proof
    assert not auth.check(key, answer, "peer", "client", "rB", challenge)
    assert not auth.check(key, answer, "peer", "controller", "rA", challenge)
    assert not auth.check(key, answer, "peer", "client", "rA", auth.nonce())  # a replayed one
    assert auth.identity("client", "rA") == "client-rA" and auth.identity("operator", "cli") == "operator"
