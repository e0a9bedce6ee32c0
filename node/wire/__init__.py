"""The jute codec of ZooKeeper's client protocol and the peer protocol's framing (pure: bytes in, records out)."""
