import Testing
@testable import StreamRecNumerics

@Suite struct BLASTests {
    /// Slow, obvious reference: C = op(A)·op(B).
    func naive(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var acc = 0.0
            for p in 0..<k {
                let av = ta ? a[p * m + i] : a[i * k + p]
                let bv = tb ? b[j * k + p] : b[p * n + j]
                acc += Double(av) * Double(bv)
            }
            c[i * n + j] = acc
        } }
        return c
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func sgemmMatchesReference(_ ta: Bool, _ tb: Bool) {
        var rng = SplitMix64(seed: 7)
        let m = 13, n = 7, k = 29
        let a = (0..<(m * k)).map { _ in rng.uniform(-1, 1) }
        let b = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }
        var c = [Float](repeating: 0.5, count: m * n)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            BLAS.sgemm(ta ? .transpose : .none, tb ? .transpose : .none, m: m, n: n, k: k, alpha: 2,
                       a: ap.baseAddress!, b: bp.baseAddress!, beta: 1, c: cp.baseAddress!)
        } } }
        let ref = naive(ta, tb, m, n, k, a, b)
        for i in 0..<(m * n) {
            #expect(abs(Double(c[i]) - (2 * ref[i] + 0.5)) < 1e-4, "element \(i)")
        }
    }

    @Test func randomIsDeterministicAndUniform() {
        var a = SplitMix64(seed: 1), b = SplitMix64(seed: 1), c = SplitMix64(seed: 2)
        let xa = (0..<1000).map { _ in a.nextDouble() }
        let xb = (0..<1000).map { _ in b.nextDouble() }
        let xc = (0..<1000).map { _ in c.nextDouble() }
        #expect(xa == xb)
        #expect(xa != xc)
        let mean = xa.reduce(0, +) / 1000
        #expect(abs(mean - 0.5) < 0.05)
        #expect(xa.allSatisfy { $0 >= 0 && $0 < 1 })
    }

    @Test func stableLogLoss() {
        #expect(abs(logLoss(logit: 0, label: 1) - Float(0.6931472)) < 1e-6)
        #expect(logLoss(logit: 100, label: 1) < 1e-6)
        #expect(abs(logLoss(logit: -100, label: 1) - 100) < 1e-3)
        #expect(sigmoid(-1000) == 0 || sigmoid(-1000) < 1e-30)
        #expect(sigmoid(1000) == 1)
    }
}
