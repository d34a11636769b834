using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Security;

/// <summary>
/// API keys from <c>Api:ReadKeys</c>, <c>Api:ApiKeys</c> and <c>Api:AdminKeys</c>, sent as <c>Authorization: Bearer KEY</c> or <c>X-Api-Key: KEY</c>. Keys are
/// compared as SHA-256 digests in constant time, so neither the comparison time nor a length check tells an
/// attacker anything. No key and no part of one is ever logged or echoed: the principal is named by the key's
/// list and position in the configuration (<c>Api:ApiKeys:0</c>). The principal carries one
/// <see cref="ApiScopes.Claim"/> per scope its list grants.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> schemeOptions,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IOptions<ApiOptions> apiOptions,
    IProblemDetailsService problems) : AuthenticationHandler<AuthenticationSchemeOptions>(schemeOptions, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    /// <summary>The claim with the caller's key id: 16 hex digits of the SHA-256 of its API key.</summary>
    public const string KeyIdClaim = "fleet:api-key-id";
    public const string HeaderName = "X-Api-Key";

    private readonly (byte[] Digest, string Name, IReadOnlyList<string> Scopes)[] _keys =
    [
        .. apiOptions.Value.KeyLists.SelectMany(list => list.Keys.Select((key, i) =>
            (SHA256.HashData(Encoding.UTF8.GetBytes(key.Trim())), $"{list.Name}:{i}", list.Scopes))),
    ];

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = PresentedKey(Request);
        if (presented is null)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        var match = -1;
        for (var i = 0; i < _keys.Length; i++)
        {
            // No early exit: every configured key is compared, whichever matches.
            if (CryptographicOperations.FixedTimeEquals(digest, _keys[i].Digest))
            {
                match = i;
            }
        }

        if (match < 0)
        {
            return Task.FromResult(AuthenticateResult.Fail("The API key is not valid."));
        }

        // The key's id (a prefix of its SHA-256, stable when keys are added or reordered) scopes what a caller owns,
        // such as its idempotency keys; the key itself is never stored.
        var (_, name, scopes) = _keys[match];
        var identity = new ClaimsIdentity(
            [
                new Claim(ClaimTypes.Name, name),
                new Claim(KeyIdClaim, Convert.ToHexStringLower(digest)[..16]),
                .. scopes.Select(scope => new Claim(ApiScopes.Claim, scope)),
            ],
            SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var presented = PresentedKey(Request) is not null;
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails =
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = "Unauthorized",
                Detail = presented
                    ? "The API key is not valid."
                    : $"This endpoint needs an API key: send 'Authorization: Bearer KEY' or '{HeaderName}: KEY'.",
            },
        }).ConfigureAwait(false);
    }

    private static string? PresentedKey(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            var token = header["Bearer ".Length..].Trim();
            return token.Length > 0 ? token : null;
        }

        var key = request.Headers[HeaderName].ToString().Trim();
        return key.Length > 0 ? key : null;
    }
}
