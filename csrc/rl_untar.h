/* rl_untar.h: streaming OCI layer unpacker (cdef-parsable, appended to rl_api.h).
 *
 * rl_untar() reads a tar stream (ustar, GNU long names / sparse, PAX) from
 * tar_fd, which may be a pipe, and creates its entries below root_dirfd without
 * ever leaving it. Ownership, whiteouts and devices follow opts->flags. On
 * failure it returns -1 with err filled (stage RL_STAGE_UNTAR); what was already
 * created stays (callers unpack into a staging directory and delete it). After
 * the end-of-archive marker the rest of tar_fd is read to EOF, so that a writer
 * feeding a pipe always finishes. */

/* chown to the archive ids (mapped through uids/gids when given). */
#define RL_UNTAR_CHOWN 1
/* no chown: the owner/mode of regular files and directories is recorded in
 * user.containers.override_stat as "uid:gid:0MODE:TYPE" (containers/storage
 * format, read by fuse-overlayfs); on disk they stay the caller's, at least u+rw
 * (directories u+rwx), without setuid/setgid. */
#define RL_UNTAR_OVERRIDE_STAT 2
/* overlay format: .wh.NAME becomes a 0:0 character device, .wh..wh..opq an
 * opaque xattr. Without it whiteouts are applied by deletion (flatten mode). */
#define RL_UNTAR_OVERLAY 4
/* overlay opaque marker as user.overlay.opaque (else trusted.overlay.opaque). */
#define RL_UNTAR_USERXATTR 8
/* refuse device nodes (skipped and counted in devices_skipped). */
#define RL_UNTAR_NO_DEVICES 16

struct rl_untar_opts {
    unsigned int flags;
    const struct rl_idmap *uids;
    size_t n_uids;
    const struct rl_idmap *gids;
    size_t n_gids;
    /* Limits against decompression bombs and huge sparse files; 0: none. A member
     * over a limit fails the unpack with EFBIG. */
    uint64_t max_file_size;  /* apparent size of one regular file (holes count) */
    uint64_t max_total_size; /* apparent size of all regular files together */
};

struct rl_untar_stats {
    uint64_t entries;         /* archive members processed (metadata headers excluded) */
    uint64_t bytes;           /* file content bytes written (apparent size) */
    uint64_t whiteouts;       /* whiteouts and opaque markers handled */
    uint64_t skipped;         /* members not created: unknown types, volume labels, ... */
    uint64_t devices_skipped; /* device nodes not created as real devices */
    uint64_t xattrs_dropped;  /* overlay/override xattrs from the archive, failed best-effort ones */
    uint64_t hardlinks;       /* hard links created */
    uint64_t sparse_files;    /* files written with holes */
};

int rl_untar(int tar_fd, int root_dirfd, const struct rl_untar_opts *opts,
             struct rl_untar_stats *stats, struct rl_error *err);
