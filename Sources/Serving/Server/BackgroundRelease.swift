// Giving a replaced version's memory back off the request path, for every model family: the
// version's parts are dropped on a short-lived thread at low priority, after which glibc is asked
// to return free heap memory to the kernel (`malloc_trim`).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Checkpoint

/// Frees replaced model versions off the request path (see `WideDeepServable.deinit`, `RecommenderServable.deinit`).
enum BackgroundRelease {
    /// Holds the parts until the release thread drops them.
    private final class Parts: Sendable {
        let parts = Mutex<[any Sendable]?>(nil)
    }

    private static let counters = Mutex<(released: Int, offCallerThread: Int)>((0, 0))
    /// Releases completed so far, and how many of them ran on another thread than the one that
    /// dropped the version (tests).
    static var completed: (released: Int, offCallerThread: Int) { counters.withLock { $0 } }

    /// Drops `parts` (a version's model, dictionaries…) on a thread of its own.
    static func release(_ parts: [any Sendable]) {
        let box = Parts()
        box.parts.withLock { $0 = parts }
        nonisolated(unsafe) let caller = Thread.current
        let thread = Thread {
            lowerThisThreadsPriority()
            // The model and anything no other version shares are freed here.
            box.parts.withLock { $0 = nil }
            returnFreeMemoryToKernel()
            let off = Thread.current !== caller
            counters.withLock { $0.released += 1; if off { $0.offCallerThread += 1 } }
        }
        thread.name = "serving-release"
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// Asks glibc to give free heap memory back to the kernel (freed chunks below the mmap threshold
/// stay in the heap otherwise, and count as resident until reused).
func returnFreeMemoryToKernel() {
    _ = GlibcMalloc.trim?(0)
}

/// glibc's malloc tuning calls (not in Swift's Glibc module: they live in <malloc.h>), looked up
/// once with dlsym; nil on other C libraries, where both calls are skipped.
private enum GlibcMalloc {
    typealias TrimFunction = @convention(c) (Int) -> Int32
    typealias OptFunction = @convention(c) (Int32, Int32) -> Int32
    /// `M_MMAP_THRESHOLD` from <malloc.h>.
    static let mmapThreshold: Int32 = -3

    static let trim: TrimFunction? = symbol("malloc_trim")
    static let opt: OptFunction? = symbol("mallopt")

    private static func symbol<F>(_ name: String) -> F? {
        #if canImport(Glibc)
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: F.self)
        #else
        return nil
        #endif
    }
}

/// Makes glibc give large freed blocks straight back to the kernel: fixes the mmap threshold at
/// 128 KiB. Left dynamic (the default), glibc raises the threshold to the size of the largest
/// mmapped block freed so far (up to 32 MiB), so after the first reload the next version's
/// buffers (parameters, 4096-row chunks) come from the heap, and when that version is replaced
/// its memory stays resident as free heap. Called once by `streamrec serve` at start-up.
public func configureAllocatorForServing() {
    _ = GlibcMalloc.opt?(GlibcMalloc.mmapThreshold, 128 * 1024)
}
