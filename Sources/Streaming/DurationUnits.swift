// Duration in the units the C libraries and log lines take: one place for the arithmetic.
extension Duration {
    /// Whole milliseconds (rounded down), as Redis and librdkafka take them (PEXPIRE, timeouts).
    public var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }

    /// Seconds as a Double (for rates, `Thread.sleep`, log lines).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
