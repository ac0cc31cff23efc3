/// SplitMix64: tiny, fast, deterministic across platforms. Everything random in StreamRec
/// (initialisation, data generation, shuffles) derives from one of these with an explicit seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(nextDouble())
    }

    /// Standard normal by Box–Muller (one value per call; simplicity over speed).
    public mutating func normal() -> Double {
        let u1 = max(nextDouble(), 1e-300)
        let u2 = nextDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    /// A stateless hash of (seed, key): used where a value must not depend on visiting order,
    /// e.g. the initial value of an embedding row created on first sight of its id.
    @inline(__always)
    public static func mix(_ seed: UInt64, _ key: UInt64) -> UInt64 {
        var g = SplitMix64(seed: seed ^ (key &* 0xD6E8_FEB8_6659_FD93))
        return g.next()
    }
}

@inline(__always) func _log(_ x: Double) -> Double { Foundation_log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation_cos(x) }
