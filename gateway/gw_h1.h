/* gw_h1: HTTP/1.1 connections (http-parser): keep-alive, Content-Length and chunked bodies,
 * Expect: 100-continue, pipelining one request at a time. The functions are declared in
 * gw_int.h (gw_h1_*), this header only documents the module. */
#ifndef GW_H1_H
#define GW_H1_H

#include "gw_int.h"

#endif
