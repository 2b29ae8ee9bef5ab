"""Thin adapters to the outside worlds: the link (mDNS), the rendezvous (OpenDHT), unicast DNS."""
