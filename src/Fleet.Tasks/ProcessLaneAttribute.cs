namespace Fleet.Tasks;

/// <summary>
/// Marks a handler whose tasks every worker runs in its process lane, in a child process of its own, besides the
/// types listed in <c>Worker:ProcessTypes</c>: for code that may crash, leak, hang or ignore its cancellation token.
/// The handler itself stays as it is; only where it runs changes.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class ProcessLaneAttribute : Attribute;
