#include "cm_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_config_env_name(const char *flag, char *buf, size_t cap)
{
    size_t pos = (size_t)snprintf(buf, cap, "TIGRESS_");
    for (; *flag && pos + 1 < cap; flag++)
        buf[pos++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    buf[pos] = '\0';
}

static int set_value(const char *prog, cm_opt_t *o, const char *v, const char *source)
{
    switch (o->type) {
    case CM_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case CM_OPT_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "%s: %s: --%s wants an integer, got \"%s\"\n", prog, source, o->name,
                    v);
            return -1;
        }
        *(int64_t *)o->dst = n;
        return 0;
    }
    case CM_OPT_BOOL:
        if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
            !strcasecmp(v, "on")) {
            *(int *)o->dst = 1;
        } else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
                   !strcasecmp(v, "off")) {
            *(int *)o->dst = 0;
        } else {
            fprintf(stderr, "%s: %s: --%s wants a boolean, got \"%s\"\n", prog, source, o->name, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

static void print_help(const char *prog, const char *summary, const cm_opt_t *opts, size_t n)
{
    printf("Usage: %s [--option=value ...]\n%s\n\nOptions (flag, environment variable, default):\n",
           prog, summary);
    for (size_t i = 0; i < n; i++) {
        char env[128];
        cm_config_env_name(opts[i].name, env, sizeof(env));
        printf("  --%s  (%s, default \"%s\")\n      %s\n", opts[i].name, env,
               opts[i].def ? opts[i].def : "", opts[i].help);
    }
    printf("  --help\n      Print this text and exit.\n");
}

int cm_config_parse(const char *prog, const char *summary, cm_opt_t *opts, size_t nopts, int argc,
                    char **argv, int *npos)
{
    for (size_t i = 0; i < nopts; i++) {
        if (set_value(prog, &opts[i], opts[i].def ? opts[i].def : "", "default") != 0)
            return -1;
        char env[128];
        cm_config_env_name(opts[i].name, env, sizeof(env));
        const char *v = getenv(env);
        if (v && set_value(prog, &opts[i], v, env) != 0)
            return -1;
    }
    int pos = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(prog, summary, opts, nopts);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (!npos) {
                fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog, arg);
                return -1;
            }
            argv[1 + pos++] = argv[a];
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cm_opt_t *o = NULL;
        for (size_t i = 0; i < nopts; i++) {
            if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
                o = &opts[i];
        }
        if (!o) {
            fprintf(stderr, "%s: unknown option \"%s\" (see --help)\n", prog, arg);
            return -1;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == CM_OPT_BOOL) {
            v = "1";
        } else if (a + 1 < argc) {
            v = argv[++a];
        } else {
            fprintf(stderr, "%s: --%s needs a value\n", prog, o->name);
            return -1;
        }
        if (set_value(prog, o, v, "flag") != 0)
            return -1;
    }
    if (npos)
        *npos = pos;
    return 0;
}

int cm_config_read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return -1;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err || n > max) {
        free(buf);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int cm_config_write_ready(const char *path, const char *json)
{
    if (!path || !*path)
        return 0;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fputs(json, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

int cm_config_split_listen(const char *listen, char *host, size_t hcap, int *port)
{
    const char *colon, *h = listen;
    size_t hlen;
    if (!listen || !*listen)
        return -1;
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = listen + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - listen);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return -1;
    if (hlen == 0) {
        h = "0.0.0.0";
        hlen = strlen(h);
    }
    if (hlen >= hcap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}
