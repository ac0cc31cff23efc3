// The served model version and how it changes: one lock-protected reference to an immutable
// version of any family (`ServableModel`). Readers take the reference (a retain) and use it
// without the lock; the watcher replaces it. Replacing never waits for readers: a request that
// already holds the old version finishes on it, and the old version is freed when its last holder
// lets go.
import Synchronization

/// Holds the model version being served. Safe from any thread.
///
/// ```swift
/// guard let model = slot.current else { return unavailable() }  // keeps this version alive
/// let wideDeep = slot.current(as: WideDeepServable.self)       // nil when another family serves
/// ```
public final class ModelSlot: Sendable {
    private let model = Mutex<(any ServableModel)?>(nil)

    public init() {}

    /// The version to use for one request; nil until the first load succeeds.
    public var current: (any ServableModel)? { model.withLock { $0 } }

    /// The version being served if it is an `M`.
    public func current<M: ServableModel>(as _: M.Type) -> M? { current as? M }

    /// Swaps in `new` and returns the version it replaced. There is no way to empty the slot:
    /// the last good version is never unloaded.
    @discardableResult
    public func replace(with new: any ServableModel) -> (any ServableModel)? {
        model.withLock { old in
            let previous = old
            old = new
            return previous
        }
    }
}
