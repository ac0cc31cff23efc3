// Global feature ids and the dense transform: the contract between feature workers, trainers and
// the server. Every id a model sees comes from here.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where every kind of feature id lives. Ranges never overlap:
///
/// | ids                  | meaning                                   | weight               |
/// |----------------------|-------------------------------------------|----------------------|
/// | 0 ..< 13             | dense field i has a value (id = i)        | normalised value     |
/// | 13 ..< 26            | dense field i is missing (id = 13 + i)    | 1                    |
/// | 26 ..< 52            | categorical field j is out of vocabulary  | 1                    |
/// |                      | (id = 26 + j, j = 0..<26)                 |                      |
/// | 52 ..< nextId        | one id per known category, unique across  | 1                    |
/// |                      | fields (`FeatureStats` assigns them)      |                      |
///
/// Note: there are 26 categorical fields, so the OOV range is 26 ..< 52 and the first category id
/// is 52 (`13 + 13 + 26`), not 39: starting categories at 39 would collide with OOV ids 39…51.
///
/// Category ids are assigned deterministically: by field, then by descending count, ties by the
/// category's bytes (unsigned lexicographic). Online growth appends at `nextId`.
public enum FeatureIdLayout {
    public static let denseCount = CriteoSchema.denseCount
    public static let categoricalCount = CriteoSchema.categoricalCount
    /// First id of the dense-missing range.
    public static let firstDenseMissingId: Int32 = 13
    /// First id of the per-field OOV range.
    public static let firstOOVId: Int32 = 26
    /// First category id (= number of reserved ids: 13 dense + 13 missing + 26 OOV).
    public static let firstCategoryId: Int32 = firstOOVId + Int32(CriteoSchema.categoricalCount)

    @inlinable public static func denseValueId(_ i: Int) -> Int32 { Int32(i) }
    @inlinable public static func denseMissingId(_ i: Int) -> Int32 { firstDenseMissingId + Int32(i) }
    @inlinable public static func oovId(_ j: Int) -> Int32 { firstOOVId + Int32(j) }

    /// What an id means (for debugging and checkpoint inspection).
    public enum Kind: Equatable, Sendable {
        case denseValue(field: Int)
        case denseMissing(field: Int)
        case oov(field: Int)
        case category
    }

    public static func kind(of id: Int32) -> Kind {
        precondition(id >= 0, "feature ids are non-negative")
        if id < firstDenseMissingId { return .denseValue(field: Int(id)) }
        if id < firstOOVId { return .denseMissing(field: Int(id - firstDenseMissingId)) }
        if id < firstCategoryId { return .oov(field: Int(id - firstOOVId)) }
        return .category
    }
}

/// The dense transform applied before min/max normalisation.
///
/// Criteo's dense fields are heavy-tailed counts (some can be negative, e.g. -1 in I2), so every
/// value x is first compressed with
///
///     t(x) = sign(x) · log1p(|x|)
///
/// which is monotone, odd, and maps 0 → 0. `FeatureStats` stores per-field min and max of t(x)
/// over the statistics pass, and the weight given to the model is
///
///     w = clamp((t(x) − min_t) / (max_t − min_t), 0, 1),   w = 0 when max_t == min_t.
///
/// A missing value is not transformed: it becomes the field's "missing" id with weight 1
/// (see `FeatureIdLayout`).
public enum DenseTransform {
    /// t(x) = sign(x) · log1p(|x|), computed in Double and rounded once.
    @inlinable
    public static func transform(_ x: Float) -> Float {
        let a = Double(x.magnitude)
        let t = Float(log1p(a))
        return x < 0 ? -t : t
    }

    /// clamp((t − minT) / (maxT − minT), 0, 1); 0 when maxT ≤ minT.
    @inlinable
    public static func normalise(_ t: Float, min minT: Float, max maxT: Float) -> Float {
        guard maxT > minT else { return 0 }
        let w = (t - minT) / (maxT - minT)
        return w < 0 ? 0 : (w > 1 ? 1 : w)
    }
}
