/* cm_fs: file-system helpers written once. */
#ifndef CM_FS_H
#define CM_FS_H

#include <sys/types.h>

/* mkdir -p: creates |path| and its missing parents with |mode| (an existing directory is fine).
 * Returns 0, or -1 with errno set (ENOTDIR when a component is a file, ENAMETOOLONG, ...). */
int cm_fs_mkdir_p(const char *path, mode_t mode);

#endif
