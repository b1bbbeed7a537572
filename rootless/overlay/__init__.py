"""The copy-on-write layer of containers: whiteout format, the union of layers,
`diff` (changes from the upper dir), and packing a tree into a layer tar.

    whiteout   the one home of whiteout / opaque constants and their classification
    view       read-only union of layer directories (whiteouts and opaque dirs honored)
    diff       docker-style A/C/D changes computed from the upper dir only
    export     tar streams: an upper dir as an OCI layer, a merged view as a rootfs;
               gzip + sha256 while streaming
    userns     run a piece of work in a forked child inside the container's user
               namespace (files owned by subordinate ids are only readable there)
"""
