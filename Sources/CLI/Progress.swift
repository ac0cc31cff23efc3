import Foundation

/// A one-line progress bar on stderr, drawn only when stderr is a terminal (logs stay clean).
final class Progress {
    let label: String
    let total: Int64?
    let enabled = isatty(2) != 0
    let start = Date()
    var lastDraw = Date.distantPast

    init(label: String, total: Int64?) {
        self.label = label
        self.total = total
    }

    func update(_ done: Int64) {
        guard enabled, Date().timeIntervalSince(lastDraw) > 0.2 else { return }
        lastDraw = Date()
        draw(done)
    }

    func finish(_ done: Int64) {
        guard enabled else { return }
        draw(done)
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw(_ done: Int64) {
        let rate = Double(done) / max(Date().timeIntervalSince(start), 1e-6)
        var line = "\r\(label) "
        if let total, total > 0 {
            let frac = min(Double(done) / Double(total), 1)
            let width = 30, filled = Int(frac * Double(width))
            line += "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
            line += String(format: " %3.0f%%", frac * 100)
        } else {
            line += "\(done)"
        }
        line += String(format: "  %.0f/s ", rate)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
