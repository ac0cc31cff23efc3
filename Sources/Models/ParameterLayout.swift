/// One flat allocation cut into named tensors by a layout table (llm.c's idea): gradients and
/// optimizer moments reuse the same layout, so the optimizer is one loop, an allreduce is one
/// call over one buffer, and a checkpoint is the table plus the bytes.
public struct ParameterLayout: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    public private(set) var total = 0

    public init() {}

    @discardableResult
    public mutating func add(_ name: String, shape: [Int]) -> Entry {
        let entry = Entry(name: name, shape: shape, offset: total)
        entries.append(entry)
        total += entry.count
        return entry
    }

    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }
}
