import Testing
@testable import Training

@Suite struct MetricsTests {
    /// O(n²) definition: P(score of a random positive > score of a random negative), ties ½.
    func pairwiseAUC(_ s: [Float], _ y: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in s.indices where y[i] > 0.5 { for j in s.indices where y[j] < 0.5 {
            den += 1
            num += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0)
        } }
        return num / den
    }

    @Test func aucMatchesPairwiseDefinitionWithTies() {
        var state: UInt64 = 99
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        let s = (0..<300).map { _ in Float(next() % 20) / 20 }
        let y = (0..<300).map { _ in Float(next() % 3 == 0 ? 1 : 0) }
        let fast = rocAUC(scores: s, labels: y)!
        #expect(abs(fast - pairwiseAUC(s, y)) < 1e-12)
    }

    @Test func aucEdgeCases() {
        #expect(rocAUC(scores: [0.1, 0.9], labels: [0, 1]) == 1)
        #expect(rocAUC(scores: [0.9, 0.1], labels: [0, 1]) == 0)
        #expect(rocAUC(scores: [0.5, 0.5], labels: [0, 1]) == 0.5)
        #expect(rocAUC(scores: [0.5, 0.7], labels: [1, 1]) == nil)
    }

    @Test func logLossOfKnownValues() {
        let l = meanLogLoss(probabilities: [0.5, 0.5], labels: [0, 1])
        #expect(abs(l - 0.6931471805599453) < 1e-9)
        #expect(meanLogLoss(probabilities: [1, 0], labels: [1, 0]) < 1e-6)
    }

    @Test func progressiveWindowKeepsTheNewest() {
        var pv = ProgressiveValidation(window: 4)
        pv.add(scores: [0.9, 0.9, 0.9, 0.9][...], labels: [0, 0, 1, 1][...])   // AUC 0.5
        pv.add(scores: [0.1, 0.2, 0.8, 0.9][...], labels: [0, 0, 1, 1][...])   // replaces all
        #expect(pv.count == 4)
        #expect(pv.auc == 1)
    }
}
