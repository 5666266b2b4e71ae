/* tg_state: what one device (one state directory) remembers per mailbox: the device claim it
 * uses there, its role, the payload type and a digest of the last payload it read or wrote (to
 * tell when the other side wrote). JSON in <dir>/state.json, mode 0600, directory 0700,
 * replaced atomically under an flock on <dir>/state.lock. The Secret is never stored: it lives
 * in the share URL only. */
#ifndef TG_STATE_H
#define TG_STATE_H

#include <stddef.h>

typedef struct tg_entry {
    char claim[37]; /* the deviceClaim for this mailbox: fresh per mailbox, never reused */
    char role[16];  /* "sender" or "receiver" */
    char type[24];  /* payload type last read or written, e.g. "AES128" */
    char seen[65];  /* hex SHA-256 of the last payload (IV || ciphertext || tag) read or written */
} tg_entry_t;

/* The state directory: |opt| when given, else $TIGRESS_STATE_DIR, else
 * $XDG_CONFIG_HOME/tigress, else $HOME/.config/tigress. 0, or -1 (reported). */
int tg_state_dir(const char *opt, char *out, size_t cap);

/* 1 and *e when |dir| has an entry for |mailbox_id|, 0 when not, -1 on error (reported). */
int tg_state_get(const char *dir, const char *mailbox_id, tg_entry_t *e);

/* Adds or replaces the entry of |mailbox_id| (creating |dir| 0700 as needed). 0 or -1. */
int tg_state_put(const char *dir, const char *mailbox_id, const tg_entry_t *e);

/* Removes the entry of |mailbox_id| (none is fine). 0 or -1. */
int tg_state_remove(const char *dir, const char *mailbox_id);

#endif
