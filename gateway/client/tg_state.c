#include "tg_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "tg_io.h"

int tg_state_dir(const char *opt, char *out, size_t cap)
{
    const char *env = getenv("TIGRESS_STATE_DIR"), *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (opt && *opt)
        n = snprintf(out, cap, "%s", opt);
    else if (env && *env)
        n = snprintf(out, cap, "%s", env);
    else if (xdg && *xdg == '/')
        n = snprintf(out, cap, "%s/tigress", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.config/tigress", home);
    else {
        tg_err("no state directory: set HOME, XDG_CONFIG_HOME or --state-dir");
        return -1;
    }
    if (n < 0 || (size_t)n >= cap) {
        tg_err("state directory path too long");
        return -1;
    }
    return 0;
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return (mkdir(p, 0700) == 0 || errno == EEXIST) ? 0 : -1;
}

/* Opens and flocks <dir>/state.lock (|exclusive| or shared). The fd, or -1 (reported). */
static int lock_dir(const char *dir, int exclusive)
{
    char path[4200];
    if (exclusive && make_dirs(dir) != 0) {
        tg_err("cannot create the state directory %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/state.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (!exclusive && errno == ENOENT)
            return -2; /* no directory yet: no state */
        tg_err("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno != EINTR) {
            tg_err("cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* The parsed state file, or a fresh empty state when there is none. NULL on error. */
static cJSON *load(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    FILE *f = fopen(path, "r");
    if (!f && errno == ENOENT) {
        cJSON *root = cJSON_CreateObject();
        if (root && (!cJSON_AddNumberToObject(root, "version", 1) ||
                     !cJSON_AddObjectToObject(root, "mailboxes"))) {
            cJSON_Delete(root);
            root = NULL;
        }
        return root;
    }
    if (!f) {
        tg_err("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t n = 0, k;
    char chunk[8192];
    while ((k = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        char *t = realloc(text, n + k + 1);
        if (!t)
            break;
        text = t;
        memcpy(text + n, chunk, k);
        n += k;
    }
    fclose(f);
    cJSON *root = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "mailboxes"))) {
        tg_err("%s is not a tigress state file; move it away to start afresh", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Writes |root| to <dir>/state.json through a temp file (mode 0600) and a rename. */
static int save(const char *dir, const cJSON *root)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    snprintf(tmp, sizeof(tmp), "%s/.state.json.XXXXXX", dir);
    char *text = cJSON_Print(root);
    int fd = text ? mkstemp(tmp) : -1;
    int rc = -1;
    if (fd < 0) {
        tg_err("cannot write the state in %s: %s", dir, text ? strerror(errno) : "no memory");
        goto done;
    }
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0 ||
        fchmod(fd, 0600) != 0) {
        tg_err("cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        tg_err("cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    free(text);
    return rc;
}

static void copy_str(const cJSON *o, const char *key, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(dst, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int tg_state_get(const char *dir, const char *mailbox_id, tg_entry_t *e)
{
    int fd = lock_dir(dir, 0);
    if (fd == -2)
        return 0;
    if (fd < 0)
        return -1;
    cJSON *root = load(dir);
    close(fd);
    if (!root)
        return -1;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "mailboxes");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(m, mailbox_id);
    int found = cJSON_IsObject(it);
    if (found) {
        memset(e, 0, sizeof(*e));
        copy_str(it, "claim", e->claim, sizeof(e->claim));
        copy_str(it, "role", e->role, sizeof(e->role));
        copy_str(it, "type", e->type, sizeof(e->type));
        copy_str(it, "seen", e->seen, sizeof(e->seen));
    }
    cJSON_Delete(root);
    return found;
}

/* Loads under the exclusive lock, replaces or removes the entry (|e| NULL), saves. */
static int modify(const char *dir, const char *mailbox_id, const tg_entry_t *e)
{
    int fd = lock_dir(dir, 1);
    if (fd < 0)
        return -1;
    int rc = -1;
    cJSON *root = load(dir), *it = NULL;
    if (!root)
        goto done;
    cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "mailboxes");
    cJSON_DeleteItemFromObjectCaseSensitive(m, mailbox_id);
    if (e) {
        if (!(it = cJSON_AddObjectToObject(m, mailbox_id)) ||
            !cJSON_AddStringToObject(it, "claim", e->claim) ||
            !cJSON_AddStringToObject(it, "role", e->role) ||
            !cJSON_AddStringToObject(it, "type", e->type) ||
            !cJSON_AddStringToObject(it, "seen", e->seen)) {
            tg_err("out of memory");
            goto done;
        }
    }
    rc = save(dir, root);
done:
    cJSON_Delete(root);
    close(fd);
    return rc;
}

int tg_state_put(const char *dir, const char *mailbox_id, const tg_entry_t *e)
{
    return modify(dir, mailbox_id, e);
}

int tg_state_remove(const char *dir, const char *mailbox_id)
{
    return modify(dir, mailbox_id, NULL);
}
