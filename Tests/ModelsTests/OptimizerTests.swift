import Testing
import Foundation
@testable import Models
@testable import Kernels
import StreamRecNumerics

@Suite struct OptimizerTests {
    @Test func adamFirstTwoStepsByHand() {
        let c = AdamConfig(learningRate: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
        var p: [Float] = [1.0, -2.0], m: [Float] = [0, 0], v: [Float] = [0, 0]
        adam_update(params: &p, grads: [0.5, -0.25], m: &m, v: &v, count: 2, step: 1, config: c)
        // Step 1: m̂ = g, v̂ = g², so p -= lr · g/|g| (ε negligible).
        #expect(abs(p[0] - 0.9) < 1e-6)
        #expect(abs(p[1] - (-1.9)) < 1e-6)
        #expect(abs(m[0] - 0.05) < 1e-7 && abs(v[0] - 0.00025) < 1e-4 * 0.00025)
        adam_update(params: &p, grads: [0.5, -0.25], m: &m, v: &v, count: 2, step: 2, config: c)
        // Step 2 with the same gradient: m̂ = g, v̂ = g² again, so another lr step.
        let m2 = 0.9 * 0.05 + 0.1 * 0.5, v2 = 0.999 * 0.00025 + 0.001 * 0.25
        let mhat = m2 / (1 - 0.81), vhat = v2 / (1 - 0.999 * 0.999)
        let expected = 0.9 - 0.1 * mhat / (vhat.squareRoot() + 1e-8)
        #expect(abs(Double(p[0]) - expected) < 1e-6)
    }

    @Test("the eight-lane Adam equals a scalar reference bit for bit, at every count and offset (tails, rows one by one)")
    func adamVectorEqualsScalarReference() {
        var rng = SplitMix64(seed: 71)
        let c = AdamConfig(learningRate: 3e-3)
        for count in [1, 7, 8, 9, 16, 37] {
            let n = count + 3
            var p = (0..<n).map { _ in rng.uniform(-1, 1) }, m = (0..<n).map { _ in rng.uniform(-0.1, 0.1) }
            var v = (0..<n).map { _ in rng.uniform(0, 0.01) }
            let grads = (0..<n).map { _ in rng.uniform(-2, 2) }
            var (rp, rm, rv) = (p, m, v)
            for t in 1...3 {
                // The scalar formula, written out (the kernel's documented arithmetic, same order).
                let rate = c.correctedRate(step: t)
                let eps = Float(Double(c.epsilon) * (1 - pow(Double(c.beta2), Double(t))).squareRoot())
                for i in 3..<n {
                    let g = grads[i] * 0.5
                    rm[i] = c.beta1 * rm[i] + (1 - c.beta1) * g
                    rv[i] = c.beta2 * rv[i] + (1 - c.beta2) * g * g
                    rp[i] -= rate * rm[i] / (rv[i].squareRoot() + eps)
                }
                // Starting 3 floats in: unaligned SIMD loads.
                p.withUnsafeMutableBufferPointer { pb in m.withUnsafeMutableBufferPointer { mb in v.withUnsafeMutableBufferPointer { vb in
                    grads.withUnsafeBufferPointer { gb in
                        adam_update(params: pb.baseAddress! + 3, grads: gb.baseAddress! + 3, m: mb.baseAddress! + 3, v: vb.baseAddress! + 3,
                                    count: count, step: t, config: c, gradScale: 0.5)
                    }
                } } }
                #expect(p == rp && m == rm && v == rv, "count \(count), step \(t)")
            }
        }
    }

    @Test func adamGradScaleEqualsScaledGradient() {
        let c = AdamConfig(learningRate: 0.01)
        var p1: [Float] = [0.3], m1: [Float] = [0], v1: [Float] = [0]
        var p2 = p1, m2 = m1, v2 = v1
        adam_update(params: &p1, grads: [4.0], m: &m1, v: &v1, count: 1, step: 1, config: c, gradScale: 0.25)
        adam_update(params: &p2, grads: [1.0], m: &m2, v: &v2, count: 1, step: 1, config: c)
        #expect(p1 == p2 && m1 == m2 && v1 == v2)
    }

    @Test func ftrlByHand() {
        let c = FTRLConfig(learningRate: 0.05, l1: 0.001, l2: 0.01, initialAccumulator: 1)
        var w: Float = 0, z: Float = 0, n: Float = 1
        ftrl_update(weight: &w, linear: &z, accumulator: &n, grad: 0.5, config: c)
        // n' = 1.25; σ = (√1.25 − 1)/0.05; z = 0.5 − σ·0 = 0.5;
        // w = (l1 − z) / (√1.25/0.05 + 2·l2)
        let expectedW = (0.001 - 0.5) / (1.25.squareRoot() / 0.05 + 0.02)
        #expect(abs(n - 1.25) < 1e-6)
        #expect(abs(z - 0.5) < 1e-6)
        #expect(abs(Double(w) - expectedW) < 1e-6)
        // Second step uses the new weight in the z update.
        let wPrev = w
        ftrl_update(weight: &w, linear: &z, accumulator: &n, grad: -0.1, config: c)
        let n2 = 1.25 + 0.01
        let z2 = 0.5 + (-0.1) - (n2.squareRoot() - 1.25.squareRoot()) / 0.05 * Double(wPrev)
        let w2 = abs(z2) <= 0.001 ? 0 : ((z2 < 0 ? -0.001 : 0.001) - z2) / (n2.squareRoot() / 0.05 + 0.02)
        #expect(abs(Double(z) - z2) < 1e-5)
        #expect(abs(Double(w) - w2) < 1e-5)
    }

    @Test func ftrlL1ZeroesSmallWeights() {
        let c = FTRLConfig(learningRate: 0.05, l1: 1.0, l2: 0, initialAccumulator: 1)
        var w: Float = 0, z: Float = 0, n: Float = 1
        ftrl_update(weight: &w, linear: &z, accumulator: &n, grad: 0.5, config: c)
        #expect(w == 0)  // |z| = 0.5 ≤ l1
    }
}
