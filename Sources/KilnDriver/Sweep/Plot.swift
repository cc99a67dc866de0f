import Foundation

/// Line charts with no plotting library: a chart is a list of shapes (axes with round ticks, labels, a
/// legend, one colour per series, dashed and marked series for held-out points), drawn as SVG text or
/// rasterised into a PNG with Kiln's own pixel font.
enum Plot {
    struct Series {
        var name: String
        var points: [(Double, Double)]
        var color: Int
        var dashed: Bool
        var markers = false
    }

    enum Anchor: String { case start, middle, end }
    enum Shape {
        case line(Double, Double, Double, Double, color: String, width: Double, dashed: Bool)
        case polyline([(Double, Double)], color: String, width: Double, dashed: Bool)
        case frame(Double, Double, Double, Double, color: String)
        case dot(Double, Double, radius: Double, color: String)
        /// Text whose baseline starts, centres or ends at (x, y); `vertical` reads bottom to top.
        case text(Double, Double, String, anchor: Anchor, size: Double, vertical: Bool)
    }
    struct Chart { var width: Double; var height: Double; var shapes: [Shape] }

    /// Colour-blind-safe colours (Okabe and Ito 2008), then repeated.
    static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

    /// About n round tick values covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double, _ n: Int = 6) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / Double(n), mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = (lo / step).rounded(.up) * step, out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// A tick's label with as many decimals as the spacing of the ticks needs (all alike).
    static func label(_ v: Double, spacing: Double) -> String {
        guard spacing > 0, spacing.isFinite else { return String(format: "%g", v) }
        var decimals = 0
        while decimals < 6, abs(spacing * pow(10, Double(decimals)) - (spacing * pow(10, Double(decimals))).rounded()) > 1e-6 { decimals += 1 }
        return String(format: "%.\(decimals)f", v)
    }

    static func chart(title: String, xLabel: String, yLabel: String, series: [Series], logX: Bool = false,
                      height: Double = 460) -> Chart {
        // the legend's column fits the longest name in the pixel font (12 pixels a letter)
        let right = max(200.0, 50 + 12 * Double(series.map(\.name.count).max() ?? 0))
        let width = 70 + 490 + right
        let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) }
        let fx: (Double) -> Double = logX ? { log2($0) } : { $0 }
        var x0 = all.map { fx($0.0) }.min() ?? 0, x1 = all.map { fx($0.0) }.max() ?? 1
        var y0 = all.map(\.1).min() ?? 0, y1 = all.map(\.1).max() ?? 1
        if x1 <= x0 { x0 -= 1; x1 += 1 }
        if y1 <= y0 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        let left = 70.0, top = 40.0, bottom = 55.0
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + (fx(x) - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (y1 - y) / (y1 - y0) * ph }
        var shapes: [Shape] = [.text(left + pw / 2, 22, title, anchor: .middle, size: 14, vertical: false)]
        let xt: [Double] = logX ? Array(Int(x0.rounded(.up))...max(Int(x0.rounded(.up)), Int(x1.rounded(.down)))).map { pow(2, Double($0)) } : ticks(x0, x1)
        for t in xt {
            shapes.append(.line(px(t), top, px(t), top + ph, color: "#dddddd", width: 1, dashed: false))
            shapes.append(.text(px(t), top + ph + 16, label(t, spacing: logX ? 1 : xt.count > 1 ? xt[1] - xt[0] : 1), anchor: .middle, size: 12, vertical: false))
        }
        let yt = ticks(y0, y1)
        for t in yt {
            shapes.append(.line(left, py(t), left + pw, py(t), color: "#dddddd", width: 1, dashed: false))
            shapes.append(.text(left - 6, py(t) + 4, label(t, spacing: yt.count > 1 ? yt[1] - yt[0] : 1), anchor: .end, size: 12, vertical: false))
        }
        shapes.append(.frame(left, top, pw, ph, color: "#444444"))
        shapes.append(.text(left + pw / 2, height - 14, xLabel, anchor: .middle, size: 12, vertical: false))
        shapes.append(.text(22, top + ph / 2, yLabel, anchor: .middle, size: 12, vertical: true))
        for (k, s) in series.enumerated() {
            let color = palette[s.color % palette.count]
            let pts = s.points.filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) }.map { (px($0.0), py($0.1)) }
            if pts.count > 1 { shapes.append(.polyline(pts, color: color, width: 1.8, dashed: s.dashed)) }
            if s.markers || pts.count == 1 { for p in pts { shapes.append(.dot(p.0, p.1, radius: 3, color: color)) } }
            let ly = top + 8 + Double(k) * 18, lx = left + pw + 14
            shapes.append(.line(lx, ly, lx + 24, ly, color: color, width: 2, dashed: s.dashed))
            shapes.append(.text(lx + 30, ly + 4, s.name, anchor: .start, size: 12, vertical: false))
        }
        return Chart(width: width, height: height, shapes: shapes)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func svg(_ c: Chart) -> String {
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(c.width))" height="\(Int(c.height))" viewBox="0 0 \(Int(c.width)) \(Int(c.height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>

        """
        for s in c.shapes {
            switch s {
            case .line(let x1, let y1, let x2, let y2, let color, let w, let dashed):
                out += "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(color)\" stroke-width=\"\(w)\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            case .polyline(let pts, let color, let w, let dashed):
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(w)\"\(dashed ? " stroke-dasharray=\"6 4\"" : "") points=\""
                out += pts.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ") + "\"/>\n"
            case .frame(let x, let y, let w, let h, let color):
                out += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"none\" stroke=\"\(color)\"/>\n"
            case .dot(let x, let y, let r, let color):
                out += "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"\(r)\" fill=\"\(color)\"/>\n"
            case .text(let x, let y, let text, let anchor, let size, let vertical):
                let at = vertical ? "transform=\"translate(\(f(x)) \(f(y))) rotate(-90)\"" : "x=\"\(f(x))\" y=\"\(f(y))\""
                out += "<text \(at) text-anchor=\"\(anchor.rawValue)\"\(size != 12 ? " font-size=\"\(Int(size))\"" : "")>\(escape(text))</text>\n"
            }
        }
        return out + "</svg>\n"
    }

    /// The chart as a PNG: lines, dots and the pixel font (scale 2: 10 × 14 pixel letters).
    static func png(_ c: Chart) -> Data {
        var canvas = Canvas(width: Int(c.width), height: Int(c.height))
        for s in c.shapes {
            switch s {
            case .line(let x1, let y1, let x2, let y2, let color, let w, let dashed):
                canvas.line([(x1, y1), (x2, y2)], Canvas.rgb(color), width: w, dashed: dashed)
            case .polyline(let pts, let color, let w, let dashed):
                canvas.line(pts, Canvas.rgb(color), width: w, dashed: dashed)
            case .frame(let x, let y, let w, let h, let color):
                canvas.line([(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)], Canvas.rgb(color), width: 1, dashed: false)
            case .dot(let x, let y, let r, let color):
                canvas.disc(x, y, r, Canvas.rgb(color))
            case .text(let x, let y, let text, let anchor, let size, let vertical):
                canvas.text(x, y, text, anchor: anchor, scale: size >= 14 ? 2 : 2, vertical: vertical, bold: size >= 14)
            }
        }
        return canvas.png()
    }
}

/// An RGB raster with the few drawing operations the charts need, and a PNG encoder (zlib with fixed-Huffman
/// deflate of literal runs, CRC-32 and Adler-32 as the PNG and zlib specifications define them).
struct Canvas {
    let width: Int, height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 3)
    }

    static func rgb(_ hex: String) -> (UInt8, UInt8, UInt8) {
        let v = UInt32(hex.dropFirst(), radix: 16) ?? 0
        return (UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255))
    }

    mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    mutating func disc(_ cx: Double, _ cy: Double, _ r: Double, _ c: (UInt8, UInt8, UInt8)) {
        let x0 = Int((cx - r).rounded(.down)), x1 = Int((cx + r).rounded(.up))
        let y0 = Int((cy - r).rounded(.down)), y1 = Int((cy + r).rounded(.up))
        for y in y0...y1 { for x in x0...x1 where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) <= r * r { set(x, y, c) } }
    }

    /// A polyline of the given width, sampled every half pixel; dashes of 6 on and 4 off along its length.
    mutating func line(_ pts: [(Double, Double)], _ c: (UInt8, UInt8, UInt8), width w: Double, dashed: Bool) {
        var along = 0.0
        let half = max(w / 2, 0.5)
        for (a, b) in zip(pts, pts.dropFirst()) {
            let length = ((b.0 - a.0) * (b.0 - a.0) + (b.1 - a.1) * (b.1 - a.1)).squareRoot()
            let n = max(Int(length * 2), 1)
            for k in 0...n {
                let t = Double(k) / Double(n), d = along + t * length
                if dashed, d.truncatingRemainder(dividingBy: 10) >= 6 { continue }
                let x = a.0 + t * (b.0 - a.0), y = a.1 + t * (b.1 - a.1)
                if half <= 0.6 { set(Int(x.rounded(.down)), Int(y.rounded(.down)), c) } else { disc(x, y, half - 0.2, c) }
            }
            along += length
        }
    }

    /// Text in the pixel font at scale s (letters 5s wide, 7s tall, one column of space between them), its
    /// baseline at y; vertical text reads bottom to top with its middle (or start, end) at (x, y).
    mutating func text(_ x: Double, _ y: Double, _ s: String, anchor: Plot.Anchor, scale: Int, vertical: Bool, bold: Bool) {
        let advance = (PixelFont.width + 1) * scale, total = Double(s.count * advance - scale)
        let shift = anchor == .start ? 0 : anchor == .middle ? total / 2 : total
        let black: (UInt8, UInt8, UInt8) = (0, 0, 0)
        for (k, ch) in s.enumerated() {
            for (r, bits) in PixelFont.rows(ch).enumerated() {
                for col in 0..<PixelFont.width where bits >> (PixelFont.width - 1 - col) & 1 == 1 {
                    for dy in 0..<scale {
                        for dx in 0..<(scale + (bold ? 1 : 0)) {
                            // horizontal: column u, row v of the text box from its top left
                            let u = Double(k * advance + col * scale + dx) - shift, v = Double(r * scale + dy - PixelFont.height * scale)
                            if vertical { set(Int((x + v).rounded()), Int((y - u).rounded()), black) } else { set(Int((x + u).rounded()), Int((y + v).rounded()), black) }
                        }
                    }
                }
            }
        }
    }

    func png() -> Data {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (width * 3 + 1))
        for y in 0..<height {
            raw.append(0)  // filter: none
            raw.append(contentsOf: pixels[(y * width * 3)..<((y + 1) * width * 3)])
        }
        var out: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
        func chunk(_ type: String, _ body: [UInt8]) {
            let t = Array(type.utf8)
            out += UInt32(body.count).bigEndianBytes + t + body + Canvas.crc32(t + body).bigEndianBytes
        }
        chunk("IHDR", UInt32(width).bigEndianBytes + UInt32(height).bigEndianBytes + [8, 2, 0, 0, 0])
        chunk("IDAT", Canvas.zlib(raw))
        chunk("IEND", [])
        return Data(out)
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 255)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// zlib data of one fixed-Huffman deflate block: each byte a literal, except that a byte equal to the one
    /// before it starts a copy at distance 1 of up to 258 bytes (the long white runs of a chart).
    static func zlib(_ data: [UInt8]) -> [UInt8] {
        var bits = BitWriter()
        bits.write(1, 1)  // the final block
        bits.write(1, 2)  // fixed Huffman codes
        func literal(_ v: Int) {
            switch v {
            case 0...143: bits.writeReversed(0x30 + v, 8)
            case 144...255: bits.writeReversed(0x190 + v - 144, 9)
            case 256...279: bits.writeReversed(v - 256, 7)
            default: bits.writeReversed(0xC0 + v - 280, 8)
            }
        }
        // deflate's length codes: (code, base length, extra bits)
        let lengths: [(Int, Int, Int)] = [(257, 3, 0), (258, 4, 0), (259, 5, 0), (260, 6, 0), (261, 7, 0), (262, 8, 0), (263, 9, 0),
            (264, 10, 0), (265, 11, 1), (266, 13, 1), (267, 15, 1), (268, 17, 1), (269, 19, 2), (270, 23, 2), (271, 27, 2),
            (272, 31, 2), (273, 35, 3), (274, 43, 3), (275, 51, 3), (276, 59, 3), (277, 67, 4), (278, 83, 4), (279, 99, 4),
            (280, 115, 4), (281, 131, 5), (282, 163, 5), (283, 195, 5), (284, 227, 5), (285, 258, 0)]
        var i = 0
        while i < data.count {
            var run = 0
            if i > 0 { while run < 258, i + run < data.count, data[i + run] == data[i - 1] { run += 1 } }
            if run >= 3 {
                let (code, base, extra) = lengths.last { $0.1 <= run }!
                literal(code)
                if extra > 0 { bits.write(run - base, extra) }
                bits.writeReversed(0, 5)  // distance code 0: distance 1
                i += run
            } else {
                literal(Int(data[i]))
                i += 1
            }
        }
        literal(256)
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        return [0x78, 0x01] + bits.bytes() + ((b << 16) | a).bigEndianBytes
    }
}

/// Bits written least significant first, as deflate packs them; Huffman codes go most significant first.
struct BitWriter {
    private var out: [UInt8] = [], current = 0, count = 0
    mutating func write(_ value: Int, _ n: Int) {
        for k in 0..<n {
            current |= (value >> k & 1) << count
            count += 1
            if count == 8 { out.append(UInt8(current)); current = 0; count = 0 }
        }
    }
    mutating func writeReversed(_ code: Int, _ n: Int) {
        for k in stride(from: n - 1, through: 0, by: -1) { write(code >> k & 1, 1) }
    }
    func bytes() -> [UInt8] { count > 0 ? out + [UInt8(current)] : out }
}

extension UInt32 {
    var bigEndianBytes: [UInt8] { [UInt8(self >> 24 & 255), UInt8(self >> 16 & 255), UInt8(self >> 8 & 255), UInt8(self & 255)] }
}
