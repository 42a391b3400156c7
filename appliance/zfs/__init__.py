"""The ZFS driver: one module per concept, all through the command runner.

``host`` (the userland on the other end of a runner and its capabilities), ``pools``, ``status``
(``zpool status`` as a vdev tree), ``datasets``, ``properties``, ``snapshots``, ``holds``, ``transfer``
(send/receive streams, resumable on OpenZFS), ``names`` (strict validation) and ``errors`` (typed errors from
stderr); features only OpenZFS has, refused on zfs-fuse: ``encryption`` (native encryption and keys),
``bookmarks`` and ``diff``.
"""
