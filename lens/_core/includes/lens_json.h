/* Byte classes for scanning JSON without parsing it (lens/_core/jsonbytes.pxd). */
#ifndef LENS_JSON_H
#define LENS_JSON_H
/* bytes that matter outside a JSON string: quotes and brackets */
static const unsigned char LENS_JSON_STRUCT[256] = {['"'] = 1, ['{'] = 1, ['}'] = 1,
                                                    ['['] = 1, [']'] = 1};
/* bytes that matter inside a JSON string: its end and escapes */
static const unsigned char LENS_JSON_INSTR[256] = {['"'] = 1, ['\\'] = 1};
#endif
