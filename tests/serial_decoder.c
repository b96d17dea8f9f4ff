/* Decoder for edge-yolox binary serial frames (COBS + CRC-16/CCITT-FALSE, little-endian), versions 1 and 2
   (2 appends a u16 track id to each detection; 0 = not tracked).
   Portable C99, no allocation: feed it the bytes between two 0x00 delimiters. */
#include <stddef.h>
#include <stdint.h>

static uint16_t crc16_ccitt(const uint8_t *p, size_t n) {
    uint16_t crc = 0xFFFF;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* COBS-decode n bytes in place; returns the decoded length, or -1 when malformed. */
static int cobs_decode(uint8_t *buf, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        uint8_t code = buf[in++];
        if (code == 0 || in + code - 1 > n) return -1;
        for (uint8_t i = 1; i < code; i++) buf[out++] = buf[in++];
        if (code != 0xFF && in < n) buf[out++] = 0;
    }
    return (int)out;
}

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const uint8_t *p) { return u16(p) | (uint32_t)u16(p + 2) << 16; }

typedef struct { uint16_t class_id; float score; uint16_t box[4]; uint16_t track_id; } detection_t;

/* One frame -> its version, frame index and detections (at most max); returns their number, or -1 when damaged
   (CRC, length) or of an unknown version. */
int edge_yolox_decode(uint8_t *buf, size_t n, uint8_t *version, uint32_t *frame, detection_t *dets, int max) {
    int len = cobs_decode(buf, n);
    if (len < 17 || crc16_ccitt(buf, (size_t)len - 2) != u16(buf + len - 2)) return -1;
    int count = buf[14], size = buf[0] == 1 ? 12 : buf[0] == 2 ? 14 : 0; /* bytes per detection */
    if (size == 0 || len != 17 + size * count) return -1;
    *version = buf[0];
    *frame = u32(buf + 2);
    for (int k = 0; k < count && k < max; k++) {
        const uint8_t *d = buf + 15 + size * k;
        dets[k].class_id = u16(d);
        dets[k].score = u16(d + 2) / 10000.0f;
        for (int j = 0; j < 4; j++) dets[k].box[j] = u16(d + 4 + 2 * j);
        dets[k].track_id = size == 14 ? u16(d + 12) : 0;
    }
    return count;
}

#ifdef DECODER_MAIN /* the test's driver: frames on stdin, one line per frame on stdout:
                      "<frame> <count> v<version> <class>:<score>:<x1>,<y1>,<x2>,<y2>:<track_id> ..." */
#include <stdio.h>
int main(void) {
    static uint8_t buf[4096];
    detection_t dets[255];
    size_t n = 0;
    int c;
    while ((c = getchar()) != EOF) {
        if (c != 0) {
            if (n < sizeof buf) buf[n++] = (uint8_t)c;
            continue;
        }
        uint32_t frame = 0;
        uint8_t version = 0;
        int count = n ? edge_yolox_decode(buf, n, &version, &frame, dets, 255) : -2;
        n = 0;
        if (count == -2) continue;
        if (count < 0) { puts("bad"); continue; }
        printf("%u %d v%u", frame, count, version);
        for (int k = 0; k < count; k++)
            printf(" %u:%.4f:%u,%u,%u,%u:%u", dets[k].class_id, dets[k].score, dets[k].box[0], dets[k].box[1],
                   dets[k].box[2], dets[k].box[3], dets[k].track_id);
        putchar('\n');
    }
    return 0;
}
#endif
