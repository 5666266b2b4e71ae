/* gw_h2: HTTP/2 connections (h2 over TLS, h2c with prior knowledge) on an nghttp2 server
 * session driven sans-IO (mem_recv/mem_send). Adds the application limits nghttp2 leaves to
 * us: SETTINGS (concurrent streams, header list size), body cap, per-stream timeouts, a cap
 * on client RST_STREAMs per connection, idle GOAWAY. Functions are declared in gw_int.h. */
#ifndef GW_H2_H
#define GW_H2_H

#include "gw_int.h"

#endif
