"""Test support: the network-namespace testbed, a two-node dhtnode network, avahi-daemon helpers."""
