/// Area under the ROC curve by rank statistics (ties get their average rank), O(n log n).
/// Returns nil when only one class is present (AUC undefined).
public func rocAUC(scores: [Float], labels: [Float]) -> Double? {
    precondition(scores.count == labels.count)
    let n = scores.count
    let order = (0..<n).sorted { scores[$0] < scores[$1] }
    var rankSumPositive = 0.0
    var positives = 0
    var i = 0
    while i < n {
        var j = i
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] { j += 1 }
        let averageRank = Double(i + j) / 2 + 1
        for k in i...j where labels[order[k]] > 0.5 {
            rankSumPositive += averageRank
            positives += 1
        }
        i = j + 1
    }
    let negatives = n - positives
    guard positives > 0, negatives > 0 else { return nil }
    return (rankSumPositive - Double(positives) * Double(positives + 1) / 2) / (Double(positives) * Double(negatives))
}

/// Mean log loss of probabilities (clamped away from 0 and 1 like sklearn's log_loss).
public func meanLogLoss(probabilities: [Float], labels: [Float]) -> Double {
    guard !probabilities.isEmpty else { return 0 }
    var total = 0.0
    for (p, y) in zip(probabilities, labels) {
        let q = min(max(Double(p), 1e-7), 1 - 1e-7)
        total += y > 0.5 ? -log(q) : -log(1 - q)
    }
    return total / Double(probabilities.count)
}

/// Scores collected before training on them (progressive validation), over a sliding window
/// of the most recent `window` rows so the figure tracks the current model.
public struct ProgressiveValidation: Sendable {
    public let window: Int
    private var scores: [Float] = []
    private var labels: [Float] = []
    private var head = 0

    public init(window: Int = 100_000) { self.window = window }

    public mutating func add(scores s: ArraySlice<Float>, labels l: ArraySlice<Float>) {
        for (x, y) in zip(s, l) {
            if scores.count < window { scores.append(x); labels.append(y) } else {
                scores[head] = x; labels[head] = y; head = (head + 1) % window
            }
        }
    }

    public var auc: Double? { rocAUC(scores: scores, labels: labels) }
    public var logLoss: Double { meanLogLoss(probabilities: scores, labels: labels) }
    public var count: Int { scores.count }
}

#if canImport(Glibc)
import Glibc
#endif
