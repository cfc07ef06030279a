/*
 * mex_text.c: MATLAB/Octave char arrays <-> UTF-8, and string arguments.
 *
 * Strings from libdime (dime_value_get_string) come as pointer + length,
 * not NUL-terminated, and may hold NULs: everything here takes explicit
 * lengths. Only what a library call takes as a C string goes through
 * name_arg, which refuses NULs instead of letting them cut the name short.
 */
#include "dime_mex.h"

#include <string.h>

/* UTF-8 bytes of `n` mxChars read with stride `stride` from `c`, written
 * into a new mxMalloc'd buffer (NUL-terminated; *len excludes the NUL).
 * Octave's mxChar is a byte (its strings are UTF-8 already); MATLAB's is a
 * UTF-16 code unit, transcoded here (unpaired surrogates become U+FFFD). */
char *chars_to_utf8(const mxChar *c, size_t n, size_t stride, size_t *len)
{
    char *out;
    size_t i, k = 0;
    if (sizeof(mxChar) == 1) {
        out = (char *)mxMalloc(n + 1);
        for (i = 0; i < n; i++)
            out[i] = (char)c[i * stride];
        out[n] = 0;
        *len = n;
        return out;
    }
    out = (char *)mxMalloc(3 * n + 1); /* a UTF-16 unit never needs more */
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(uint16_t)c[i * stride];
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < n) {
            uint32_t lo = (uint32_t)(uint16_t)c[(i + 1) * stride];
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                i++;
            } else {
                u = 0xFFFD;
            }
        } else if (u >= 0xD800 && u <= 0xDFFF) {
            u = 0xFFFD;
        }
        if (u < 0x80) {
            out[k++] = (char)u;
        } else if (u < 0x800) {
            out[k++] = (char)(0xC0 | (u >> 6));
            out[k++] = (char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
            out[k++] = (char)(0xE0 | (u >> 12));
            out[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (u & 0x3F));
        } else {
            out[k++] = (char)(0xF0 | (u >> 18));
            out[k++] = (char)(0x80 | ((u >> 12) & 0x3F));
            out[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (u & 0x3F));
        }
    }
    out[k] = 0;
    *len = k;
    return out;
}

/* A 1xN char row (0x0 when empty) holding `len` UTF-8 bytes (Octave) or
 * their UTF-16 transcoding (MATLAB). */
mxArray *utf8_to_mx(const char *s, size_t len)
{
    mwSize dims[2];
    mxArray *a;
    mxChar *c;
    size_t i, k = 0, units;
    if (sizeof(mxChar) == 1) {
        dims[0] = len ? 1 : 0;
        dims[1] = len;
        a = mxCreateCharArray(2, dims);
        if (len)
            memcpy(mxGetChars(a), s, len);
        return a;
    }
    /* count UTF-16 units */
    for (i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        if ((b & 0xC0) != 0x80)
            k += (b >= 0xF0) ? 2 : 1;
    }
    units = k;
    dims[0] = k ? 1 : 0;
    dims[1] = k;
    a = mxCreateCharArray(2, dims);
    c = mxGetChars(a);
    k = 0;
    /* The count above trusts that `s` is valid UTF-8 (libdime's strings
     * are); the bound keeps a malformed sequence from writing past the
     * array, whatever it decodes to. */
    for (i = 0; i < len && k < units;) {
        unsigned char b = (unsigned char)s[i];
        uint32_t u;
        int extra;
        if (b < 0x80) { u = b; extra = 0; }
        else if (b >= 0xF0) { u = b & 0x07; extra = 3; }
        else if (b >= 0xE0) { u = b & 0x0F; extra = 2; }
        else { u = b & 0x1F; extra = 1; }
        i++;
        while (extra-- > 0 && i < len)
            u = (u << 6) | ((unsigned char)s[i++] & 0x3F);
        if (u >= 0x10000 && k + 1 < units) {
            u -= 0x10000;
            c[k++] = (mxChar)(0xD800 + (u >> 10));
            c[k++] = (mxChar)(0xDC00 + (u & 0x3FF));
        } else {
            c[k++] = (mxChar)u;
        }
    }
    return a;
}

char *text_arg(const mxArray *a, const char *what, size_t *len)
{
    if (!mxIsChar(a) || (mxGetM(a) > 1 && mxGetNumberOfElements(a) > 0)
        || mxGetNumberOfDimensions(a) > 2)
        fail("argument", "%s must be a character row vector", what);
    return chars_to_utf8(mxGetChars(a), mxGetNumberOfElements(a), 1, len);
}

char *name_arg(const mxArray *a, const char *what)
{
    size_t len;
    char *s = text_arg(a, what, &len);
    if (memchr(s, 0, len))
        fail("argument", "%s must not contain NUL characters", what);
    return s;
}
