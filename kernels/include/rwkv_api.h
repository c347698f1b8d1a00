/* rwkv_api.h — RWKV_API marks what librwkv exports (it is built with hidden visibility). */
#ifndef RWKV_API_H
#define RWKV_API_H

#if defined(__GNUC__)
#define RWKV_API __attribute__((visibility("default")))
#else
#define RWKV_API
#endif

#endif
