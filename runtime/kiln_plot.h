/*
 * kiln_plot.h - figures without a plotting library: a list of filled rectangles and texts in pixel
 * coordinates, written as a PNG (rasterised with a 5x7 pixel font, zlib/deflate and CRC written here) or as
 * an SVG, by the extension of the path. The programs draw their pictures with it (infer attention).
 */
#ifndef KILN_PLOT_H
#define KILN_PLOT_H

#include <stdint.h>
#include "kiln_rt.h"

/* One glyph of the pixel font is 5 x 7 pixels at scale 1; letters advance 6 pixels. */
#define KILN_GLYPH_W 5
#define KILN_GLYPH_H 7

typedef struct { int x, y, w, h; uint32_t rgb; } kiln_fig_rect;
typedef struct {
    int x, y;       /* the top-left corner of the text's box (vertical: the bottom-left; it reads upwards) */
    int scale;      /* pixel-font scale: letters 5*scale x 7*scale */
    int vertical;
    uint32_t rgb;
    char *text;     /* printable ASCII (others are drawn as '?') */
} kiln_fig_text;

typedef struct {
    int width, height;
    kiln_fig_rect *rects;
    size_t num_rects, cap_rects;
    kiln_fig_text *texts;
    size_t num_texts, cap_texts;
} kiln_figure;

/* An empty white figure; kiln_figure_free releases what it holds. Out of memory dies. */
KILN_RT_API void kiln_figure_init(kiln_figure *f, int width, int height);
KILN_RT_API void kiln_figure_free(kiln_figure *f);
KILN_RT_API void kiln_figure_rect(kiln_figure *f, int x, int y, int w, int h, uint32_t rgb);
KILN_RT_API void kiln_figure_text(kiln_figure *f, int x, int y, int scale, int vertical, uint32_t rgb, const char *text);
/* The width of text in the pixel font at a scale. */
KILN_RT_API int kiln_text_width(const char *text, int scale);
/* Writes the figure to path, atomically: an SVG when path ends in .svg (of at most KILN_SVG_MAX_RECTS
 * rectangles: one per cell of a heat map, which a PNG draws at any size), a PNG otherwise. 0, or -1 with err. */
#define KILN_SVG_MAX_RECTS 200000
KILN_RT_API int kiln_figure_write(const kiln_figure *f, const char *path, kiln_error *err);
/* The PNG of an RGB image (w*h*3 bytes, rows top to bottom) as bytes in *out (malloc'd), its size in *len. */
KILN_RT_API int kiln_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len);

/* A colour of the sequential blue scale for v in [0, 1] (white at 0, dark blue at 1). */
KILN_RT_API uint32_t kiln_blues(double v);


/* A grid of heat maps into f (initialised here): `panels` maps of rows x cols values in [0, 1] (row-major, one
 * map after another), coloured by kiln_blues, one map large or a grid of them, row_labels left of each map's
 * rows and col_labels above its columns (when the cells are large enough to hold them; every k-th index
 * otherwise), panel_titles above each map (NULL: none), the title and a subtitle above all, and a colour bar
 * from 0 to 1. */
KILN_RT_API void kiln_heatmaps(kiln_figure *f, const float *values, int panels, int rows, int cols,
                               const char *const *row_labels, const char *const *col_labels,
                               const char *const *panel_titles, const char *title, const char *subtitle);
#endif /* KILN_PLOT_H */
