/// A fixed-size, 64-byte aligned, zero-initialised Float allocation that owns its memory.
///
/// Layers and optimizers work on `buffer` (an `UnsafeMutableBufferPointer<Float>`); the owner
/// keeps the `FloatBuffer` alive for as long as the pointer is used. Not thread-safe: one
/// owner mutates it at a time (the trainer thread).
public final class FloatBuffer: @unchecked Sendable {
    public let buffer: UnsafeMutableBufferPointer<Float>

    public init(count: Int) {
        precondition(count >= 0)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        let typed = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        typed.initialize(repeating: 0, count: max(count, 1))
        buffer = UnsafeMutableBufferPointer(start: typed, count: count)
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        for i in 0..<values.count { buffer[i] = values[i] }
    }

    deinit { UnsafeMutableRawPointer(buffer.baseAddress!).deallocate() }

    public var count: Int { buffer.count }
    public var pointer: UnsafeMutablePointer<Float> { buffer.baseAddress! }

    public subscript(i: Int) -> Float {
        get { buffer[i] }
        set { buffer[i] = newValue }
    }

    /// A view of `count` floats starting at `offset`.
    public func slice(_ offset: Int, _ count: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(offset >= 0 && offset + count <= buffer.count, "slice out of range")
        return UnsafeMutableBufferPointer(start: buffer.baseAddress! + offset, count: count)
    }

    public func zero() { buffer.update(repeating: 0) }
    public func toArray() -> [Float] { Array(buffer) }
}
