namespace Fleet.Tasks;

/// <summary>
/// The task's input is invalid for its type (wrong types, missing fields, sizes out of range). Recorded as a
/// <c>failed</c> task with <c>error_type = 'ValidationError'</c> and never retried: running it again cannot help.
/// </summary>
public sealed class TaskValidationException : Exception
{
    public TaskValidationException(string message)
        : base(message)
    {
    }

    public TaskValidationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public TaskValidationException()
    {
    }

    /// <summary>Throws when <paramref name="value"/> is outside [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static void ThrowIfOutOfRange(long value, long min, long max, string field)
    {
        if (value < min || value > max)
        {
            throw new TaskValidationException($"'{field}' must be between {min} and {max}; got {value}.");
        }
    }
}
