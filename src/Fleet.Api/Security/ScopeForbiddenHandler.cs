using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using Microsoft.AspNetCore.Authorization.Policy;

namespace Fleet.Api.Security;

/// <summary>
/// A valid key without the route's scope gets 403 as problem details that name the scope it lacks, so that the caller
/// knows which list its key must move to; everything else (401 for no or a wrong key, success) is the default.
/// </summary>
internal sealed class ScopeForbiddenHandler(IProblemDetailsService problems) : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        var scope = authorizeResult.Forbidden
            ? authorizeResult.AuthorizationFailure?.FailedRequirements.OfType<ClaimsAuthorizationRequirement>()
                .Where(r => r.ClaimType == ApiScopes.Claim).SelectMany(r => r.AllowedValues ?? []).FirstOrDefault()
            : null;
        if (scope is null)
        {
            await _default.HandleAsync(next, context, policy, authorizeResult).ConfigureAwait(false);
            return;
        }

        context.Response.StatusCode = StatusCodes.Status403Forbidden;
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails =
            {
                Status = StatusCodes.Status403Forbidden,
                Title = "Forbidden",
                Detail = $"This endpoint needs an API key with the scope '{scope}'; {ScopeSource(scope)}.",
                Extensions = { ["scope"] = scope },
            },
        }).ConfigureAwait(false);
    }

    private static string ScopeSource(string scope) => scope switch
    {
        ApiScopes.Admin => "only keys from Api:AdminKeys have it",
        ApiScopes.Write => "keys from Api:ApiKeys and Api:AdminKeys have it",
        _ => "every key has it",
    };
}
