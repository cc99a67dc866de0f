import Foundation

/// Line charts as SVG text, with no plotting library: axes with round ticks, labels, a legend, one colour per
/// series (dashed and marked series for held-out points).
enum Plot {
    struct Series {
        var name: String
        var points: [(Double, Double)]
        var color: Int
        var dashed: Bool
        var markers = false
    }

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

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func svg(title: String, xLabel: String, yLabel: String, series: [Series], logX: Bool = false,
                    width: Double = 760, height: Double = 460) -> String {
        let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) }
        let fx: (Double) -> Double = logX ? { log2($0) } : { $0 }
        var x0 = all.map { fx($0.0) }.min() ?? 0, x1 = all.map { fx($0.0) }.max() ?? 1
        var y0 = all.map(\.1).min() ?? 0, y1 = all.map(\.1).max() ?? 1
        if x1 <= x0 { x0 -= 1; x1 += 1 }
        if y1 <= y0 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        let left = 70.0, right = 200.0, top = 40.0, bottom = 55.0
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + (fx(x) - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (y1 - y) / (y1 - y0) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(left + pw / 2))" y="22" text-anchor="middle" font-size="14">\(escape(title))</text>
        <rect x="\(f(left))" y="\(f(top))" width="\(f(pw))" height="\(f(ph))" fill="none" stroke="#444"/>

        """
        let xt: [Double] = logX ? Array(Int(x0.rounded(.up))...max(Int(x0.rounded(.up)), Int(x1.rounded(.down)))).map { pow(2, Double($0)) } : ticks(x0, x1)
        for t in xt {
            let x = px(t)
            out += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + ph))\" stroke=\"#ddd\"/>"
            out += "<text x=\"\(f(x))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\">\(label(t, spacing: logX ? 1 : xt.count > 1 ? xt[1] - xt[0] : 1))</text>\n"
        }
        let yt = ticks(y0, y1)
        for t in yt {
            let y = py(t)
            out += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + pw))\" y2=\"\(f(y))\" stroke=\"#ddd\"/>"
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(label(t, spacing: yt.count > 1 ? yt[1] - yt[0] : 1))</text>\n"
        }
        out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 14))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        out += "<text transform=\"translate(18 \(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (k, s) in series.enumerated() {
            let color = palette[s.color % palette.count]
            let pts = s.points.filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) }
            if pts.count > 1 {
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\""
                out += pts.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ") + "\"/>\n"
            }
            if s.markers || pts.count == 1 {
                for p in pts { out += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"3\" fill=\"\(color)\"/>" }
                out += "\n"
            }
            // the legend
            let ly = top + 8 + Double(k) * 18, lx = left + pw + 14
            out += "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            out += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly + 4))\">\(escape(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }
}
