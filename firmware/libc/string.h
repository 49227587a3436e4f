/* The part of <string.h> the firmware and the protocol codec use (libc/libc_min.c): the
 * firmware links no C library. */
#ifndef EXOFW_STRING_H
#define EXOFW_STRING_H
#include <stddef.h>
void *memset(void *s, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
size_t strlen(const char *s);
char *strncpy(char *restrict d, const char *restrict s, size_t n);
#endif
