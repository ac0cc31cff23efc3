/// Owned, growable scratch of Int32 (ids, slots, indices) with a stable pointer between resizes.
public final class Int32Buffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Int32>
    public private(set) var capacity: Int

    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Grows to at least `count` elements, keeping existing values; new ones are `fill`.
    public func ensure(_ count: Int, fill: Int32 = 0) {
        guard count > capacity else { return }
        let newCapacity = max(count, capacity * 2)
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: newCapacity)
        p.update(from: pointer, count: capacity)
        (p + capacity).initialize(repeating: fill, count: newCapacity - capacity)
        pointer.deallocate()
        pointer = p
        capacity = newCapacity
    }

    public subscript(i: Int) -> Int32 {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}
