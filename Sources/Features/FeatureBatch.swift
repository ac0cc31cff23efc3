/// The Criteo layout every stage agrees on: 13 dense (integer count) fields, then 26 categorical.
public enum CriteoSchema {
    public static let denseCount = 13
    public static let categoricalCount = 26
    public static let fieldCount = denseCount + categoricalCount
}

/// B encoded rows, the unit that flows from feature workers to trainers.
///
/// Layout is row-major: row `b`, field `f` lives at `b * fieldCount + f`.
/// - `ids`: global feature ids (see `FeatureIdLayout`), one per field.
/// - `weights`: the field's weight: normalised dense value in [0, 1], or 1 for a category.
/// - `labels`: 0 or 1 per row (0 for unlabelled inference rows).
public struct FeatureBatch: Sendable, Equatable {
    public var fieldCount: Int
    public var ids: [Int32]
    public var weights: [Float]
    public var labels: [Float]

    public init(fieldCount: Int, ids: [Int32], weights: [Float], labels: [Float]) {
        precondition(ids.count == weights.count && ids.count == labels.count * fieldCount,
                     "FeatureBatch: ids/weights must be labels.count × fieldCount")
        self.fieldCount = fieldCount
        self.ids = ids
        self.weights = weights
        self.labels = labels
    }

    public var count: Int { labels.count }
}
