namespace Fleet.Api.Security;

/// <summary>
/// What an API key may do, each scope including the ones before it: <c>read</c> (every GET of tasks, batches,
/// workers, stats and <c>/metrics</c>) &lt; <c>write</c> (submit) &lt; <c>admin</c> (cancel). A key's list in
/// <see cref="ApiOptions"/> decides its scopes: <c>Api:ReadKeys</c> read, <c>Api:ApiKeys</c> read and write,
/// <c>Api:AdminKeys</c> all three. Each scope is an authorization policy of the same name.
/// </summary>
public static class ApiScopes
{
    public const string Read = "read";
    public const string Write = "write";
    public const string Admin = "admin";

    /// <summary>The claim that carries one scope; a principal has one such claim per scope it holds.</summary>
    public const string Claim = "fleet:scope";

    /// <summary>The scopes a key of each list holds.</summary>
    public static readonly IReadOnlyList<string> ReadOnly = [Read];
    public static readonly IReadOnlyList<string> ReadWrite = [Read, Write];
    public static readonly IReadOnlyList<string> All = [Read, Write, Admin];
}
