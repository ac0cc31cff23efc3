import Foundation
import Testing
@testable import StreamRecNumerics

/// The SIMD8 row operations against their scalar definitions (they run with -Ounchecked in the
/// softmax over the catalogue and the ranking metrics).
@Suite struct VectorMathTests {
    @Test func sqrt8AndSqrt1EqualSquareRootBitForBit() {
        var rng = SplitMix64(seed: 13)
        var values: [Float] = [0, -0.0, 1, 4, .infinity, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude]
        for _ in 0..<4_000 { values.append(rng.uniform(0, 1) * pow(10, Float(Int(rng.next() % 60)) - 30)) }
        for start in stride(from: 0, to: values.count - 7, by: 8) {
            var x = SIMD8<Float>()
            for k in 0..<8 { x[k] = values[start + k] }
            let y = sqrt8(x)
            for k in 0..<8 {
                #expect(y[k].bitPattern == x[k].squareRoot().bitPattern, "√\(x[k])")
                #expect(sqrt1(x[k]).bitPattern == x[k].squareRoot().bitPattern)
            }
        }
        #expect(sqrt1(-1).isNaN && sqrt8(SIMD8(repeating: -4))[3].isNaN)
    }

    @Test func tanh8MatchesDoubleTanh() {
        var rng = SplitMix64(seed: 17)
        var worst: Double = 0
        for n in [1, 7, 8, 9, 4_000] {
            // Both branches (|x| ≤ 0.625 and beyond), tiny values, saturation.
            var x = (0..<n).map { _ in rng.uniform(-1, 1) * pow(10, Float(Int(rng.next() % 8)) - 6) * 3 }
            if n > 8 { x[0] = 0; x[1] = -0.625; x[2] = 0.6251; x[3] = 50; x[4] = -.infinity; x[5] = .infinity; x[6] = -1e-30 }
            var out = [Float](repeating: .nan, count: n)
            vtanh(out: &out, x, n)
            for j in 0..<n {
                let ref = Foundation.tanh(Double(x[j]))
                let err = abs(Double(out[j]) - ref) / max(abs(ref), 1e-38)
                worst = max(worst, err)
                #expect(err < 4e-7, "tanh(\(x[j])) = \(out[j]), want \(ref)")
            }
        }
        #expect(worst > 0, "compared something")
        #expect(tanh8(SIMD8(repeating: .nan))[0].isNaN)
    }

    @Test func exp8MatchesLibmWithinTwoUlp() {
        var rng = SplitMix64(seed: 11)
        var worst: Double = 0
        for _ in 0..<20_000 {
            var x = SIMD8<Float>()
            for k in 0..<8 { x[k] = rng.uniform(-87, 88) }
            let y = exp8(x)
            for k in 0..<8 {
                let ref = Foundation.exp(Double(x[k]))
                let rel = abs(Double(y[k]) - ref) / ref
                worst = max(worst, rel)
            }
        }
        #expect(worst < 2.5e-7, "worst relative error \(worst)")
        // Masked (−∞) and underflowing lanes are exactly 0; exp(0) is exactly 1.
        let edge = exp8(SIMD8(-.infinity, -1000, -88, 0, 1, -1, 88, 0.5))
        #expect(edge[0] == 0 && edge[1] == 0 && edge[2] == 0 && edge[3] == 1)
        #expect(abs(Double(edge[4]) - M_E) < 1e-6 && edge[6].isFinite)
    }

    @Test func rowMaxExpSumAndScaleMatchScalarLoops() {
        var rng = SplitMix64(seed: 5)
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 1001] {
            var x = (0..<n).map { _ in rng.uniform(-20, 20) }
            if n > 3 { x[2] = -.infinity }
            let m = x.withUnsafeBufferPointer { vmax($0.baseAddress ?? UnsafePointer(bitPattern: 8)!, n) }
            #expect(m == (x.max() ?? -.infinity))
            guard n > 0 else { continue }
            var out = [Float](repeating: .nan, count: n)
            let s = x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { vexpShifted(out: $0.baseAddress!, xp.baseAddress!, shift: m, n) } }
            var ref = 0.0
            for j in 0..<n {
                let e = Foundation.exp(Double(x[j] - m))
                ref += e
                #expect(abs(Double(out[j]) - e) <= 3e-7 * e + 1e-30, "n \(n) j \(j)")
            }
            #expect(abs(Double(s) - ref) <= 1e-5 * ref)
            let total = out.withUnsafeBufferPointer { vsum($0.baseAddress!, n) }
            #expect(abs(Double(total) - ref) <= 1e-5 * ref)
            out.withUnsafeMutableBufferPointer { vscale($0.baseAddress!, 0.5, n) }
            for j in 0..<n { #expect(abs(Double(out[j]) - 0.5 * Foundation.exp(Double(x[j] - m))) <= 3e-7) }
        }
    }

    @Test func countAheadMatchesTheScalarRankRule() {
        var rng = SplitMix64(seed: 9)
        for n in [2, 3, 10, 17, 64, 333] {
            // Few distinct values, so ties are common.
            let x = (0..<n).map { _ in Float(Int(rng.uniform(0, 6))) }
            for a in 0..<n {
                for lower in [0, 2] where lower < n {
                    let t = x[a]
                    var ref = 0
                    for j in lower..<n where j != a && (x[j] > t || (x[j] == t && j < a)) { ref += 1 }
                    let got = x.withUnsafeBufferPointer { vcountAhead($0.baseAddress!, lower..<n, threshold: t, tieBefore: a) }
                    #expect(got == ref, "n \(n) a \(a) from \(lower)")
                }
            }
        }
    }
}
