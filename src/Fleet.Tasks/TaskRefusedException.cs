namespace Fleet.Tasks;

/// <summary>
/// The task asks for something this worker's configuration forbids (an <c>http-get</c> target in a denied network,
/// say). Recorded as a <c>failed</c> task with <see cref="ErrorType"/> and the message, and never retried: another
/// attempt would be refused the same way.
/// </summary>
public sealed class TaskRefusedException : Exception
{
    public TaskRefusedException(string errorType, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(errorType);
        ErrorType = errorType;
    }

    public TaskRefusedException()
    {
    }

    public TaskRefusedException(string message)
        : base(message)
    {
    }

    public TaskRefusedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>What <c>error_type</c> records.</summary>
    public string ErrorType { get; } = "TaskRefused";
}
