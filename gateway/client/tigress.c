/* tigress: the reference command line of the Tigress relay. One device per state directory;
 * see `tigress --help`. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "tg_cmd.h"
#include "tg_io.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"send", tg_cmd_send, "encrypt a file into a new mailbox; print the share URL"},
    {"receive", tg_cmd_receive, "read, verify and decrypt a mailbox (binds this device)"},
    {"reply", tg_cmd_reply, "write an answer into the mailbox (stateful flow)"},
    {"wait", tg_cmd_wait, "wait until the other device wrote, then decrypt it (polls)"},
    {"delete", tg_cmd_delete, "delete the mailbox"},
    {"relinquish", tg_cmd_relinquish, "as the receiver, let go of the mailbox"},
    {"preview", tg_cmd_preview, "show the link preview (title, description, image)"},
    {"demo", tg_cmd_demo, "run the car key exchange between two simulated devices"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tigress COMMAND [OPTIONS] [ARGS]   (tigress COMMAND --help for more)\n"
               "Shares a file or a key through a Tigress relay, end to end encrypted: the\n"
               "Secret travels only in the share URL's fragment, which never reaches the relay.\n"
               "\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nQuick start (two terminals, or two machines):\n"
               "  tigress send --relay https://relay.example key.bin | tee url\n"
               "  tigress receive @url -o key.bin\n"
               "\nExit status: 0 ok, 1 failure, 2 usage, 3 integrity check failed (wrong\n"
               "Secret or tampered content), 4 mailbox gone (404), 5 not allowed (401: another\n"
               "device bound, or a right missing), 6 relay unreachable / TLS / timeout, 7 too\n"
               "large. Errors are one line on stderr.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return TG_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return TG_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        tg_cmd_name = commands[i].name;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            tg_err("libcurl failed to initialize");
            return TG_EXIT_FAIL;
        }
        int rc = commands[i].run(argc - 1, argv + 1);
        curl_global_cleanup();
        return rc;
    }
    fprintf(stderr, "tigress: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return TG_EXIT_USAGE;
}
