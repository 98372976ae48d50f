"""The mutapub library: configuration, storage, snapshots, change sets and everything built on them."""
