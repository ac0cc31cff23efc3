// Synthetic Criteo-format data from a planted model (`streamrec gen`).
//
// Rows look like Criteo's: 13 dense log-normal integer counts with per-field missing rates (and a
// few negatives in I2), 26 categorical fields of 8-hex-char values with cardinalities from 4 to
// 200,000, Zipf-distributed (exponent 1.1), some fields often empty. Every row also carries its
// true click probability from the planted model:
//
//     logit = bias                                   (calibrated so that CTR ≈ targetCTR)
//           + Σ_j w_j[category_j]                    (normal; larger std for low-cardinality fields)
//           + Σ_i β_i · z_i  or  m_i if missing      (z_i = standardised log1p(value), clipped ±3)
//           + γ₁ · h_A · h_B · z_K                   (sign factors of two fields × a dense value:
//                                                     an xor-like interaction a linear model cannot fit)
//           + γ₂ · u_C · u_D                         (product of two fields' hidden normal factors)
//     p = sigmoid(logit), label ~ Bernoulli(p)
//
// Deterministic for a seed and configuration, on every platform (own PRNG, no Foundation random).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// MARK: - PRNG

/// xoshiro256** seeded through SplitMix64. Deterministic and platform-independent.
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller; one of the pair is discarded to keep the state simple).
    @inline(__always)
    public mutating func normal() -> Double {
        let u1 = 1 - uniform()  // (0, 1]
        let u2 = uniform()
        return sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2)
    }
}

// MARK: - Configuration and planted model

public struct SyntheticCriteo: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Distinct values per categorical field (26).
        public var cardinalities: [Int]
        /// Probability that a categorical field is empty (26).
        public var emptyRates: [Double]
        /// Zipf exponent of category popularity.
        public var zipfExponent: Double
        /// Probability that a dense field is missing (13).
        public var denseMissingRates: [Double]
        /// Log-normal parameters of the dense counts (13 each).
        public var denseLogMean: [Double]
        public var denseLogStd: [Double]
        /// Probability of a negative value (-1…-3) in I2.
        public var negativeRateI2: Double
        /// The bias is calibrated so that the mean click probability is about this.
        public var targetCTR: Double
        /// Write the label column (false: 39-field inference rows).
        public var labelled: Bool

        public static let `default` = Configuration(
            cardinalities: [1_000, 500, 200_000, 80_000, 200, 30, 10_000, 500, 4, 3_000,
                            5_000, 150_000, 2_000, 20, 8_000, 100_000, 12, 1_200, 8, 15_000,
                            120_000, 50, 100, 30_000, 300, 50_000],
            emptyRates: [0, 0, 0.03, 0.03, 0, 0.1, 0, 0, 0, 0,
                         0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.4, 0.4,
                         0, 0.75, 0, 0.03, 0.4, 0.4],
            zipfExponent: 1.1,
            denseMissingRates: [0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22],
            denseLogMean: [1.0, 2.5, 2.0, 1.5, 8.0, 4.0, 1.5, 2.5, 4.0, 0.3, 1.0, 0.5, 2.0],
            denseLogStd: [1.0, 1.8, 1.2, 1.0, 1.8, 1.6, 1.2, 1.0, 1.3, 0.6, 0.9, 1.0, 1.1],
            negativeRateI2: 0.08,
            targetCTR: 0.25,
            labelled: true)
    }

    /// The planted parameters (immutable, shared between copies of a generator).
    final class Model: Sendable {
        let config: Configuration
        let salt: UInt32
        let offsets: [Int]                 // global index offset of each field (for unique hex codes)
        let cumulative: [[Double]]         // per field, unnormalised Zipf CDF
        let weights: [[Float]]             // per field, per category rank
        let emptyWeight: [Double]
        let denseBeta: [Double], denseMissing: [Double]
        let negativeWeight: Double
        // Interactions.
        let fieldA = 4, fieldB = 7, denseK = 6, gamma1 = 0.8
        let fieldC = 9, fieldD = 13, gamma2 = 0.5
        let signA: [Float], signB: [Float], factorC: [Float], factorD: [Float]
        private(set) nonisolated(unsafe) var bias: Double  // set once, during init

        init(seed: UInt64, config: Configuration) {
            precondition(config.cardinalities.count == CriteoSchema.categoricalCount
                         && config.emptyRates.count == CriteoSchema.categoricalCount
                         && config.denseMissingRates.count == CriteoSchema.denseCount
                         && config.denseLogMean.count == CriteoSchema.denseCount
                         && config.denseLogStd.count == CriteoSchema.denseCount
                         && config.cardinalities.allSatisfy { $0 >= 1 })
            self.config = config
            var rng = Xoshiro256(seed: seed ^ 0x5EED_0F_5EED_0F)
            salt = UInt32(truncatingIfNeeded: rng.next())
            var off = 0
            var offsets: [Int] = []
            var cumulative: [[Double]] = []
            var weights: [[Float]] = []
            for card in config.cardinalities {
                offsets.append(off); off += card
                var c = [Double](repeating: 0, count: card)
                var acc = 0.0
                for k in 0..<card { acc += pow(Double(k + 1), -config.zipfExponent); c[k] = acc }
                cumulative.append(c)
                let std = card <= 50 ? 0.5 : card <= 1_000 ? 0.35 : card <= 20_000 ? 0.2 : 0.1
                weights.append((0..<card).map { _ in Float(std * rng.normal()) })
            }
            self.offsets = offsets
            self.cumulative = cumulative
            self.weights = weights
            emptyWeight = (0..<CriteoSchema.categoricalCount).map { _ in 0.3 * rng.normal() }
            denseBeta = (0..<CriteoSchema.denseCount).map { _ in 0.3 * rng.normal() }
            denseMissing = (0..<CriteoSchema.denseCount).map { _ in 0.2 * rng.normal() }
            negativeWeight = 0.3 * rng.normal()
            func signs(_ n: Int) -> [Float] { (0..<n).map { _ in rng.next() & 1 == 0 ? -1 : 1 } }
            func factors(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.normal()) } }
            signA = signs(config.cardinalities[fieldA] + 1)    // last = empty category
            signB = signs(config.cardinalities[fieldB] + 1)
            factorC = factors(config.cardinalities[fieldC] + 1)
            factorD = factors(config.cardinalities[fieldD] + 1)
            bias = 0
            // Calibrate the bias on a sample of logits so that mean p ≈ targetCTR.
            var probe = SyntheticCriteo.Row()
            var sampler = Xoshiro256(seed: seed ^ 0xCA11_B8A7E)
            let logits: [Double] = (0..<4_000).map { _ in
                self.sample(&sampler, into: &probe)
                return self.logit(probe, bias: 0)
            }
            var lo = -10.0, hi = 10.0
            for _ in 0..<60 {
                let mid = (lo + hi) / 2
                let mean = logits.reduce(0) { $0 + 1 / (1 + exp(-($1 + mid))) } / Double(logits.count)
                if mean < config.targetCTR { lo = mid } else { hi = mid }
            }
            bias = (lo + hi) / 2
        }

        /// Draws the row's hidden values (category ranks, dense values).
        @inline(__always)
        func sample(_ rng: inout Xoshiro256, into row: inout SyntheticCriteo.Row) {
            for j in 0..<CriteoSchema.categoricalCount {
                if config.emptyRates[j] > 0 && rng.uniform() < config.emptyRates[j] {
                    row.rank[j] = -1
                    continue
                }
                let c = cumulative[j]
                let u = rng.uniform() * c[c.count - 1]
                var lo = 0, hi = c.count - 1
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    if c[mid] > u { hi = mid } else { lo = mid + 1 }
                }
                row.rank[j] = lo
            }
            for i in 0..<CriteoSchema.denseCount {
                if config.denseMissingRates[i] > 0 && rng.uniform() < config.denseMissingRates[i] {
                    row.dense[i] = nil
                    continue
                }
                if i == 1 && rng.uniform() < config.negativeRateI2 {
                    row.dense[i] = -1 - Int(rng.next() % 3 == 0 ? rng.next() % 3 : 0)
                    continue
                }
                let v = exp(config.denseLogMean[i] + config.denseLogStd[i] * rng.normal()) - 1
                row.dense[i] = v < 0 ? 0 : Int(Swift.min(v, 1e12))
            }
        }

        @inline(__always)
        func z(_ i: Int, _ v: Int) -> Double {
            let t = (log1p(Double(Swift.max(v, 0))) - config.denseLogMean[i]) / config.denseLogStd[i]
            return Swift.min(Swift.max(t, -3), 3)
        }

        func logit(_ row: SyntheticCriteo.Row, bias: Double) -> Double {
            var s = bias
            for j in 0..<CriteoSchema.categoricalCount {
                let r = row.rank[j]
                s += r < 0 ? emptyWeight[j] : Double(weights[j][r])
            }
            for i in 0..<CriteoSchema.denseCount {
                guard let v = row.dense[i] else { s += denseMissing[i]; continue }
                s += v < 0 ? negativeWeight : denseBeta[i] * z(i, v)
            }
            func idx(_ f: Int) -> Int { row.rank[f] < 0 ? config.cardinalities[f] : row.rank[f] }
            let zk = row.dense[denseK].map { z(denseK, $0) } ?? 0
            s += gamma1 * Double(signA[idx(fieldA)] * signB[idx(fieldB)]) * zk
            s += gamma2 * Double(factorC[idx(fieldC)] * factorD[idx(fieldD)])
            return s
        }

        /// 8 lowercase hex chars for category `rank` of field `j`; a bijection of the global index,
        /// so values never repeat within or across fields.
        @inline(__always)
        func hexCode(_ j: Int, _ rank: Int) -> UInt32 {
            var h = UInt32(truncatingIfNeeded: offsets[j] + rank) ^ salt
            h ^= h >> 16; h = h &* 0x85EB_CA6B
            h ^= h >> 13; h = h &* 0xC2B2_AE35
            h ^= h >> 16
            return h
        }
    }

    /// A row's hidden values: category rank per field (-1 = empty), dense value (nil = missing).
    struct Row {
        var rank = [Int](repeating: 0, count: CriteoSchema.categoricalCount)
        var dense = [Int?](repeating: nil, count: CriteoSchema.denseCount)
    }

    let model: Model
    var rng: Xoshiro256
    var row = Row()

    public init(seed: UInt64, configuration: Configuration = .default) {
        model = Model(seed: seed, config: configuration)
        rng = Xoshiro256(seed: seed)
    }

    public var configuration: Configuration { model.config }

    /// Appends one Criteo-format row (no newline) to `line`; returns its true click probability.
    public mutating func appendRow(to line: inout [UInt8]) -> Double {
        model.sample(&rng, into: &row)
        let p = 1 / (1 + exp(-model.logit(row, bias: model.bias)))
        let label = rng.uniform() < p
        if model.config.labelled {
            line.append(label ? UInt8(ascii: "1") : UInt8(ascii: "0"))
            line.append(0x09)
        }
        for i in 0..<CriteoSchema.denseCount {
            if let v = row.dense[i] { appendDecimal(&line, Int64(v)) }
            line.append(0x09)
        }
        let hex: StaticString = "0123456789abcdef"
        for j in 0..<CriteoSchema.categoricalCount {
            let r = row.rank[j]
            if r >= 0 {
                let code = model.hexCode(j, r)
                hex.withUTF8Buffer { h in
                    var shift: UInt32 = 28
                    for _ in 0..<8 { line.append(h[Int((code >> shift) & 0xF)]); shift &-= 4 }
                }
            }
            if j + 1 < CriteoSchema.categoricalCount { line.append(0x09) }
        }
        return p
    }

    /// The next row as bytes (no newline) and its true click probability.
    public mutating func nextRow() -> (line: [UInt8], probability: Double) {
        var line: [UInt8] = []
        line.reserveCapacity(200)
        let p = appendRow(to: &line)
        return (line, p)
    }
}

extension SyntheticCriteo: IteratorProtocol, Sequence {
    /// An endless stream of (row as String without newline, true click probability).
    public mutating func next() -> (line: String, probability: Double)? {
        let (bytes, p) = nextRow()
        return (String(decoding: bytes, as: UTF8.self), p)
    }
}

/// Appends a probability in [0, 1] as "0.123456789".
@inline(__always)
func appendProbability(_ out: inout [UInt8], _ p: Double) {
    let scaled = UInt64((Swift.min(Swift.max(p, 0), 1) * 1e9).rounded())
    if scaled >= 1_000_000_000 { out.append(contentsOf: "1.000000000".utf8); return }
    out.append(UInt8(ascii: "0")); out.append(UInt8(ascii: "."))
    var d: UInt64 = 100_000_000
    var x = scaled
    while d > 0 { out.append(0x30 + UInt8(x / d)); x %= d; d /= 10 }
}

/// Writes `rows` synthetic rows to `url` (Criteo TSV, one row per line) and each row's true click
/// probability to `probabilitiesTo` (one decimal per line, same order). Both files are written
/// under temporary names and renamed when complete. Deterministic for `seed`.
public func writeSynthetic(rows: Int, seed: UInt64, to url: URL, probabilitiesTo probURL: URL,
                           configuration: SyntheticCriteo.Configuration = .default) throws {
    var gen = SyntheticCriteo(seed: seed, configuration: configuration)
    let data = try BufferedFileWriter(path: url.path, atomic: true)
    let probs = try BufferedFileWriter(path: probURL.path, atomic: true)
    for _ in 0..<rows {
        let p = gen.appendRow(to: &data.buffer)
        data.buffer.append(0x0A)
        appendProbability(&probs.buffer, p)
        probs.buffer.append(0x0A)
        try data.maybeFlush()
        try probs.maybeFlush()
    }
    try data.close()
    try probs.close()
}
