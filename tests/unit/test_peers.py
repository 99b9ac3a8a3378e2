from hookfan.app.peers import TrustedPeers
from hookfan.config import IntakeSettings


def test_default_trusted_proxies_are_the_private_and_loopback_ranges():
    trusted = TrustedPeers(IntakeSettings().trusted_proxies)
    for addr in ("10.1.2.3", "172.16.0.9", "192.168.1.1", "127.0.0.1", "::1", "fd00::5",
                 "::ffff:10.0.0.7"):
        assert trusted(addr), addr
    for addr in ("203.0.113.7", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8", "", "nonsense"):
        assert not trusted(addr), addr


def test_no_trusted_proxies_trusts_nobody():
    assert not TrustedPeers(())("127.0.0.1")
