package vpx

/*
#cgo pkg-config: vpx
#cgo LDFLAGS: -lyuv
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>
#include <libyuv/convert.h>
#include <libyuv/convert_argb.h>
#include <libyuv/convert_from_argb.h>

// Colour conversion is libyuv's (SIMD): BT.601 limited range both ways.
// libyuv names pixels by their 32-bit word, so its "ARGB" is BGRX in
// memory and its "ABGR" is RGBA in memory.

// bgrx_to_i420 converts the rectangle [x0,x1)x[y0,y1) of src; x0 and y0
// must be even so that chroma samples are not shared with pixels outside.
static void bgrx_to_i420(const unsigned char *src, int stride,
		int x0, int y0, int x1, int y1, vpx_image_t *img) {
	ARGBToI420(src + (size_t)y0 * stride + 4 * (size_t)x0, stride,
		img->planes[0] + (size_t)y0 * img->stride[0] + x0, img->stride[0],
		img->planes[1] + (size_t)(y0/2) * img->stride[1] + x0/2, img->stride[1],
		img->planes[2] + (size_t)(y0/2) * img->stride[2] + x0/2, img->stride[2],
		x1 - x0, y1 - y0);
}

static void i420_to_rgba(const vpx_image_t *img, unsigned char *dst, int stride) {
	I420ToABGR(img->planes[0], img->stride[0], img->planes[1], img->stride[1],
		img->planes[2], img->stride[2], dst, stride, img->d_w, img->d_h);
}

typedef struct {
	vpx_codec_ctx_t ctx;
	vpx_codec_enc_cfg_t cfg;
	vpx_image_t *img;
	unsigned char *out;
	size_t out_len, out_cap;
	int keyframe;
	// Per macroblock (16x16): dirty when Update converted pixels in it
	// since the last frame, and how many refining frames it still gets.
	// A frame codes only dirty macroblocks (or, refining, those with
	// refining left): libvpx skips the others at once instead of searching
	// them, which is most of the work when a little of the screen changes.
	unsigned char *dirty, *refine, *active;
	int mb_cols, mb_rows;
	// A second picture Stage converts into while libvpx codes img.
	vpx_image_t *stage;
} encoder;

// refine_frames is how many frames may re-code a change once the screen is
// still, sharpening what the frame that carried it sent coarsely.
enum { refine_frames = 2 };

static int enc_open(encoder *e, int w, int h, int kbps, int threads, int cpu_used) {
	vpx_codec_err_t err = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &e->cfg, 0);
	if (err) return err;
	e->cfg.g_w = w;
	e->cfg.g_h = h;
	e->cfg.g_timebase.num = 1;
	e->cfg.g_timebase.den = 1000; // pts in milliseconds
	e->cfg.rc_target_bitrate = kbps;
	e->cfg.rc_end_usage = VPX_CBR;
	e->cfg.g_lag_in_frames = 0;
	e->cfg.g_threads = threads;
	e->cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	e->cfg.rc_min_quantizer = 2;
	e->cfg.rc_max_quantizer = 56;
	e->cfg.rc_undershoot_pct = 95;
	e->cfg.rc_overshoot_pct = 50;
	e->cfg.rc_buf_sz = 1000;
	e->cfg.rc_buf_initial_sz = 500;
	e->cfg.rc_buf_optimal_sz = 600;
	e->cfg.kf_mode = VPX_KF_DISABLED; // key frames only when asked: start and loss
	err = vpx_codec_enc_init(&e->ctx, vpx_codec_vp8_cx(), &e->cfg, 0);
	if (err) return err;
	vpx_codec_control(&e->ctx, VP8E_SET_CPUUSED, cpu_used);
	vpx_codec_control(&e->ctx, VP8E_SET_SCREEN_CONTENT_MODE, 1);
	vpx_codec_control(&e->ctx, VP8E_SET_NOISE_SENSITIVITY, 0);
	vpx_codec_control(&e->ctx, VP8E_SET_STATIC_THRESHOLD, 0);
	vpx_codec_control(&e->ctx, VP8E_SET_TOKEN_PARTITIONS, threads > 1 ? 1 : 0);
	e->img = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, w, h, 16);
	e->mb_cols = (w + 15) / 16;
	e->mb_rows = (h + 15) / 16;
	e->dirty = calloc((size_t)e->mb_cols * e->mb_rows, 1);
	e->refine = calloc((size_t)e->mb_cols * e->mb_rows, 1);
	e->active = calloc((size_t)e->mb_cols * e->mb_rows, 1);
	e->stage = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, w, h, 16);
	if (!e->img || !e->dirty || !e->refine || !e->active || !e->stage) {
		vpx_codec_destroy(&e->ctx);
		if (e->img) vpx_img_free(e->img);
		if (e->stage) vpx_img_free(e->stage);
		free(e->dirty);
		free(e->refine);
		free(e->active);
		return VPX_CODEC_MEM_ERROR;
	}
	return 0;
}

static void mark(encoder *e, unsigned char *mbs, int x0, int y0, int x1, int y1) {
	for (int r = y0 / 16; r < (y1 + 15) / 16; r++)
		memset(mbs + (size_t)r * e->mb_cols + x0 / 16, 1, (x1 + 15) / 16 - x0 / 16);
}

static void enc_update(encoder *e, const unsigned char *bgrx, int stride, int x0, int y0, int x1, int y1) {
	bgrx_to_i420(bgrx, stride, x0, y0, x1, y1, e->img);
	mark(e, e->dirty, x0, y0, x1, y1);
}

static void enc_stage(encoder *e, const unsigned char *bgrx, int stride, int x0, int y0, int x1, int y1) {
	bgrx_to_i420(bgrx, stride, x0, y0, x1, y1, e->stage);
}

// copy_plane_rect copies rows [y0,y1) and columns [x0,x1) of one plane.
static void copy_plane_rect(const vpx_image_t *from, vpx_image_t *to, int plane, int x0, int y0, int x1, int y1) {
	for (int y = y0; y < y1; y++)
		memcpy(to->planes[plane] + (size_t)y * to->stride[plane] + x0,
			from->planes[plane] + (size_t)y * from->stride[plane] + x0, (size_t)(x1 - x0));
}

// enc_take copies a rectangle enc_stage converted into the picture libvpx
// codes (x0 and y0 even, as there) and marks its macroblocks dirty.
static void enc_take(encoder *e, int x0, int y0, int x1, int y1) {
	copy_plane_rect(e->stage, e->img, 0, x0, y0, x1, y1);
	copy_plane_rect(e->stage, e->img, 1, x0 / 2, y0 / 2, (x1 + 1) / 2, (y1 + 1) / 2);
	copy_plane_rect(e->stage, e->img, 2, x0 / 2, y0 / 2, (x1 + 1) / 2, (y1 + 1) / 2);
	mark(e, e->dirty, x0, y0, x1, y1);
}

// enc_refining says whether a change still has refining frames to get.
static int enc_refining(encoder *e) {
	for (int i = 0; i < e->mb_cols * e->mb_rows; i++)
		if (e->refine[i]) return 1;
	return 0;
}

// enc_set_active hands libvpx the macroblocks this frame codes: all of them
// for a key frame, the dirty ones for a frame carrying changes, those with
// refining left for a refining frame.
static int enc_set_active(encoder *e, int all, int refining) {
	int n = e->mb_cols * e->mb_rows;
	for (int i = 0; i < n; i++) {
		if (all || (!refining && e->dirty[i])) {
			e->active[i] = 1;
			e->refine[i] = refine_frames;
		} else if (refining && e->refine[i]) {
			e->active[i] = 1;
			e->refine[i]--;
		} else {
			e->active[i] = 0;
		}
		e->dirty[i] = 0;
	}
	vpx_active_map_t map = { all ? NULL : e->active, (unsigned)e->mb_rows, (unsigned)e->mb_cols };
	return vpx_codec_control(&e->ctx, VP8E_SET_ACTIVEMAP, &map);
}

static int enc_encode(encoder *e, long long pts, int duration, int force_key, int refining) {
	vpx_codec_err_t err = enc_set_active(e, force_key, refining);
	if (err) return err;
	err = vpx_codec_encode(&e->ctx, e->img, pts, duration, force_key ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
	if (err) return err;
	e->out_len = 0;
	e->keyframe = 0;
	vpx_codec_iter_t iter = NULL;
	const vpx_codec_cx_pkt_t *pkt;
	while ((pkt = vpx_codec_get_cx_data(&e->ctx, &iter)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
		size_t need = e->out_len + pkt->data.frame.sz;
		if (need > e->out_cap) {
			size_t cap = need * 2;
			unsigned char *n = realloc(e->out, cap);
			if (!n) return VPX_CODEC_MEM_ERROR;
			e->out = n;
			e->out_cap = cap;
		}
		memcpy(e->out + e->out_len, pkt->data.frame.buf, pkt->data.frame.sz);
		e->out_len += pkt->data.frame.sz;
		if (pkt->data.frame.flags & VPX_FRAME_IS_KEY) e->keyframe = 1;
	}
	if (e->out_len == 0) {
		// The rate controller dropped the frame: what it was to code is
		// still to be coded.
		for (int i = 0; i < e->mb_cols * e->mb_rows; i++)
			if (e->active[i]) {
				if (refining) e->refine[i]++;
				else e->dirty[i] = 1;
			}
	}
	return 0;
}

static int enc_set_bitrate(encoder *e, int kbps) {
	e->cfg.rc_target_bitrate = kbps;
	return vpx_codec_enc_config_set(&e->ctx, &e->cfg);
}

static void enc_close(encoder *e) {
	vpx_codec_destroy(&e->ctx);
	if (e->img) vpx_img_free(e->img);
	if (e->stage) vpx_img_free(e->stage);
	free(e->out);
	free(e->dirty);
	free(e->refine);
	free(e->active);
}

static const char *enc_error(encoder *e) { return vpx_codec_error_detail(&e->ctx) ? vpx_codec_error_detail(&e->ctx) : vpx_codec_error(&e->ctx); }

typedef struct {
	vpx_codec_ctx_t ctx;
	vpx_image_t *img;
} decoder;

static int dec_open(decoder *d, int threads) {
	vpx_codec_dec_cfg_t cfg = {0};
	cfg.threads = threads;
	return vpx_codec_dec_init(&d->ctx, vpx_codec_vp8_dx(), &cfg, 0);
}

static int dec_decode(decoder *d, const unsigned char *buf, size_t len) {
	d->img = NULL;
	vpx_codec_err_t err = vpx_codec_decode(&d->ctx, buf, (unsigned int)len, NULL, 0);
	if (err) return err;
	vpx_codec_iter_t iter = NULL;
	vpx_image_t *img;
	while ((img = vpx_codec_get_frame(&d->ctx, &iter)) != NULL) d->img = img;
	return 0;
}

static void dec_close(decoder *d) { vpx_codec_destroy(&d->ctx); }
static const char *dec_error(decoder *d) { return vpx_codec_error_detail(&d->ctx) ? vpx_codec_error_detail(&d->ctx) : vpx_codec_error(&d->ctx); }
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"runtime"
	"time"
	"unsafe"
)

// EncoderConfig says what an encoder makes.
type EncoderConfig struct {
	Width, Height int
	BitrateKbps   int // initial target; SetBitrate changes it
	Threads       int // 0: see defaultThreads
	// Speed is libvpx's cpu-used, -16..16: further from 0 is faster and
	// blurrier; a positive value lets libvpx slow down to it when frames
	// leave time to spare, a negative one fixes the speed. 0 picks -16, the
	// fastest: on two cores a small change on a 1080p screen encodes in
	// about 7 ms instead of 10 at 8, and the picture is refined anyway by
	// the frames after a change.
	Speed int
}

// defaultThreads is how many threads an encoder or decoder uses unless
// told: one for every two CPUs, at most 4. libvpx's VP8 threads work on
// rows of one frame and spin waiting for each other, so a thread that loses
// its CPU stalls the whole frame; the app, the X server and, in tests and on
// a single machine, the viewer share the CPUs with the encoder. On two
// cores one thread each gave the lower latency and the higher frame rate.
func defaultThreads() int { return max(1, min(runtime.NumCPU()/2, 4)) }

// Encoder turns 32-bit BGRX frames into VP8 frames. It is not safe for
// concurrent use.
type Encoder struct {
	e      *C.encoder
	cfg    EncoderConfig
	closed bool
	staged []image.Rectangle // converted by Stage, not yet taken
}

// NewEncoder makes a realtime VP8 encoder.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > 16384 || cfg.Height > 16384 {
		return nil, fmt.Errorf("vp8 encoder: bad size %dx%d", cfg.Width, cfg.Height)
	}
	if cfg.BitrateKbps <= 0 {
		cfg.BitrateKbps = 4000
	}
	if cfg.Threads <= 0 {
		cfg.Threads = defaultThreads()
	}
	if cfg.Speed == 0 {
		cfg.Speed = -16
	}
	e := (*C.encoder)(C.calloc(1, C.sizeof_encoder))
	if rc := C.enc_open(e, C.int(cfg.Width), C.int(cfg.Height), C.int(cfg.BitrateKbps), C.int(cfg.Threads), C.int(cfg.Speed)); rc != 0 {
		C.free(unsafe.Pointer(e))
		return nil, fmt.Errorf("vp8 encoder: init %dx%d: libvpx error %d", cfg.Width, cfg.Height, int(rc))
	}
	return &Encoder{e: e, cfg: cfg}, nil
}

// Config is the encoder's configuration with defaults filled in.
func (enc *Encoder) Config() EncoderConfig { return enc.cfg }

// Encode compresses one frame of BGRX pixels (stride bytes per row) shown at
// pts for duration. The result is valid until the next call.
func (enc *Encoder) Encode(bgrx []byte, stride int, pts, duration time.Duration, keyframe bool) (frame []byte, isKey bool, err error) {
	if err := enc.Update(bgrx, stride, image.Rect(0, 0, enc.cfg.Width, enc.cfg.Height)); err != nil {
		return nil, false, err
	}
	return enc.EncodePicture(pts, duration, keyframe)
}

// Update converts the pixels inside r into the encoder's picture, which
// keeps everything outside r from before. Converting only what changed
// saves most of the colour conversion when a little of the screen moves.
func (enc *Encoder) Update(bgrx []byte, stride int, r image.Rectangle) error {
	return enc.convert(bgrx, stride, r, false)
}

// Stage is Update into a second picture, which Take then moves into the
// encoder's. Unlike Update it may run while another goroutine encodes (not
// while it calls Take, Update or Close): a sender converts the next frame
// while the last one is coded, and coding a 1080p frame on one core leaves
// no time to spare at 60 frames a second.
func (enc *Encoder) Stage(bgrx []byte, stride int, r image.Rectangle) error {
	return enc.convert(bgrx, stride, r, true)
}

// Take moves what Stage converted since the last Take into the picture the
// next frame codes: a copy, much cheaper than converting.
func (enc *Encoder) Take() {
	for _, r := range enc.staged {
		if !enc.closed {
			C.enc_take(enc.e, C.int(r.Min.X), C.int(r.Min.Y), C.int(r.Max.X), C.int(r.Max.Y))
		}
	}
	enc.staged = enc.staged[:0]
}

func (enc *Encoder) convert(bgrx []byte, stride int, r image.Rectangle, stage bool) error {
	if enc.closed {
		return errors.New("vp8 encoder: closed")
	}
	if stride < enc.cfg.Width*4 || len(bgrx) < stride*(enc.cfg.Height-1)+enc.cfg.Width*4 {
		return fmt.Errorf("vp8 encoder: %d bytes at stride %d do not hold %dx%d pixels", len(bgrx), stride, enc.cfg.Width, enc.cfg.Height)
	}
	r = r.Intersect(image.Rect(0, 0, enc.cfg.Width, enc.cfg.Height))
	if r.Empty() {
		return nil
	}
	r.Min.X &^= 1 // chroma is shared by 2x2 pixels
	r.Min.Y &^= 1
	pix, x0, y0, x1, y1 := (*C.uchar)(unsafe.Pointer(&bgrx[0])), C.int(r.Min.X), C.int(r.Min.Y), C.int(r.Max.X), C.int(r.Max.Y)
	if stage {
		C.enc_stage(enc.e, pix, C.int(stride), x0, y0, x1, y1)
		enc.staged = append(enc.staged, r)
	} else {
		C.enc_update(enc.e, pix, C.int(stride), x0, y0, x1, y1)
	}
	return nil
}

// EncodePicture compresses the picture as Update left it, coding only
// the areas Update converted since the last frame (all of it for a key
// frame).
func (enc *Encoder) EncodePicture(pts, duration time.Duration, keyframe bool) (frame []byte, isKey bool, err error) {
	return enc.encode(pts, duration, keyframe, false)
}

// Refining says whether Refine has something to do: areas changed recently
// that a refining frame would code again.
func (enc *Encoder) Refining() bool {
	return !enc.closed && C.enc_refining(enc.e) != 0
}

// Refine compresses a frame that shows nothing new but codes the areas of
// recent changes again, sharper: the rate controller gives a change on a
// busy screen few bits, and once the screen is still there are bits to
// spare. Each change gets a couple of such frames at most.
func (enc *Encoder) Refine(pts, duration time.Duration) (frame []byte, err error) {
	frame, _, err = enc.encode(pts, duration, false, true)
	return frame, err
}

func (enc *Encoder) encode(pts, duration time.Duration, keyframe, refining bool) (frame []byte, isKey bool, err error) {
	if enc.closed {
		return nil, false, errors.New("vp8 encoder: closed")
	}
	force, refine := 0, 0
	if keyframe {
		force = 1
	}
	if refining {
		refine = 1
	}
	rc := C.enc_encode(enc.e, C.longlong(pts.Milliseconds()), C.int(max(duration.Milliseconds(), 1)), C.int(force), C.int(refine))
	if rc != 0 {
		return nil, false, fmt.Errorf("vp8 encode: %s", C.GoString(C.enc_error(enc.e)))
	}
	if enc.e.out_len == 0 {
		return nil, false, nil // the rate controller dropped the frame
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(enc.e.out)), int(enc.e.out_len)), enc.e.keyframe != 0, nil
}

// SetBitrate changes the target bitrate from the next frame on.
func (enc *Encoder) SetBitrate(kbps int) error {
	if kbps <= 0 || enc.closed {
		return nil
	}
	if rc := C.enc_set_bitrate(enc.e, C.int(kbps)); rc != 0 {
		return fmt.Errorf("vp8 encoder: set bitrate %d kbps: %s", kbps, C.GoString(C.enc_error(enc.e)))
	}
	enc.cfg.BitrateKbps = kbps
	return nil
}

// Close frees the encoder.
func (enc *Encoder) Close() error {
	if !enc.closed {
		enc.closed = true
		C.enc_close(enc.e)
		C.free(unsafe.Pointer(enc.e))
	}
	return nil
}

// Decoder turns VP8 frames back into RGBA images. It is not safe for
// concurrent use.
type Decoder struct {
	d      *C.decoder
	closed bool
}

// NewDecoder makes a VP8 decoder.
func NewDecoder() (*Decoder, error) {
	d := (*C.decoder)(C.calloc(1, C.sizeof_decoder))
	if rc := C.dec_open(d, C.int(defaultThreads())); rc != 0 {
		C.free(unsafe.Pointer(d))
		return nil, fmt.Errorf("vp8 decoder: init: libvpx error %d", int(rc))
	}
	return &Decoder{d: d}, nil
}

// Decode decompresses one frame into dst, reallocating it when the frame's
// size differs, and returns the image. A frame that shows nothing new
// returns dst unchanged with shown false.
func (dec *Decoder) Decode(frame []byte, dst *image.RGBA) (img *image.RGBA, shown bool, err error) {
	if dec.closed {
		return dst, false, errors.New("vp8 decoder: closed")
	}
	if len(frame) == 0 {
		return dst, false, errors.New("vp8 decode: empty frame")
	}
	p := C.CBytes(frame) // libvpx may read past Go-managed memory it was not given
	defer C.free(p)
	if rc := C.dec_decode(dec.d, (*C.uchar)(p), C.size_t(len(frame))); rc != 0 {
		return dst, false, fmt.Errorf("vp8 decode: %s", C.GoString(C.dec_error(dec.d)))
	}
	vi := dec.d.img
	if vi == nil {
		return dst, false, nil
	}
	w, h := int(vi.d_w), int(vi.d_h)
	if dst == nil || dst.Rect.Dx() != w || dst.Rect.Dy() != h {
		dst = image.NewRGBA(image.Rect(0, 0, w, h))
	}
	C.i420_to_rgba(vi, (*C.uchar)(unsafe.Pointer(&dst.Pix[0])), C.int(dst.Stride))
	return dst, true, nil
}

// Close frees the decoder.
func (dec *Decoder) Close() error {
	if !dec.closed {
		dec.closed = true
		C.dec_close(dec.d)
		C.free(unsafe.Pointer(dec.d))
	}
	return nil
}
