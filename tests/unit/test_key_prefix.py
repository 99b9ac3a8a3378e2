"""``HOOKFAN_KEY_PREFIX``: a prefix with one hash tag puts every key in one Redis Cluster slot
(tests/cluster); a bad value stops every command with exit 2 and a message naming the variable,
before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hookfan.keys import checked_prefix


@pytest.mark.parametrize("good", ["hookfan:", "{hookfan}:", "team-a:{hookfan}:"])
def test_accepted_prefixes(good):
    assert checked_prefix(good) == good


@pytest.mark.parametrize("bad", ["hookfan", "{}:", "{a}{b}:", "{a:", "a}:"])
def test_refused_prefixes_name_the_variable(bad):
    with pytest.raises(ValueError, match="HOOKFAN_KEY_PREFIX"):
        checked_prefix(bad)


def test_every_key_and_the_queue_share_the_tag():
    out = subprocess.run(
        [sys.executable, "-c", "from hookfan import keys; print(keys.READY, keys.QUEUE, "
         "keys.request('x'), keys.WAKE)"],
        env={**os.environ, "HOOKFAN_KEY_PREFIX": "{hookfan}:"}, capture_output=True, text=True,
        check=True)
    assert out.stdout.split() == ["{hookfan}:q:", "{hookfan}.deliveries", "{hookfan}:req:x",
                                  "hookfan:wake"]


def test_a_bad_prefix_stops_the_cli_with_exit_2():
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes"],
                         env={**os.environ, "HOOKFAN_KEY_PREFIX": "nocolon"},
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "HOOKFAN_KEY_PREFIX 'nocolon'" in out.stderr and "Traceback" not in out.stderr
