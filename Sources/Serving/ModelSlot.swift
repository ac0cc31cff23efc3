// The served model version and how it changes: one lock-protected reference to an immutable
// `ServingModel`. Readers take the reference (a retain) and use it without the lock; the watcher
// replaces it. Replacing never waits for readers: a request that already holds the old version
// finishes on it, and the old version is freed when its last holder lets go.
import Synchronization

/// Holds the model version being served. Safe from any thread.
///
/// ```swift
/// guard let model = slot.current else { return unavailable() }  // keeps this version alive
/// let p = model.predict(rows: rows)
/// ```
public final class ModelSlot: Sendable {
    private let model = Mutex<ServingModel?>(nil)

    public init() {}

    /// The version to use for one request; nil until the first load succeeds.
    public var current: ServingModel? { model.withLock { $0 } }

    /// Swaps in `new` and returns the version it replaced. There is no way to empty the slot:
    /// the last good version is never unloaded.
    @discardableResult
    public func replace(with new: ServingModel) -> ServingModel? {
        model.withLock { old in
            let previous = old
            old = new
            return previous
        }
    }
}
