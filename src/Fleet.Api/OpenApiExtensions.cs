using Fleet.Api.Security;
using Microsoft.OpenApi;

namespace Fleet.Api;

internal static class OpenApiExtensions
{
    /// <summary>The document at <c>/openapi/v1.json</c>, with the two ways of sending an API key declared as security schemes.</summary>
    public static IServiceCollection AddFleetOpenApi(this IServiceCollection services) =>
        services.AddOpenApi(options => options.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Fleet API";
            document.Info.Description =
                "Submit tasks to the Fleet worker fleet and watch them. Every route but /health, /alive and this document needs an API key " +
                "(Authorization: Bearer KEY, or X-Api-Key: KEY) with a scope: read (Api:ReadKeys, Api:ApiKeys, Api:AdminKeys) for reads, " +
                "write (Api:ApiKeys, Api:AdminKeys) to submit, admin (Api:AdminKeys) to cancel. Each operation's security requirement names " +
                "its scope. No key is 401; a key without the scope is 403. With Api:ReadsRequireKey false the reads are open. " +
                "Errors are application/problem+json.";
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "An API key from Api:ReadKeys, Api:ApiKeys or Api:AdminKeys.",
            };
            document.Components.SecuritySchemes["apiKey"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = ApiKeyAuthenticationHandler.HeaderName,
                Description = "An API key from Api:ReadKeys, Api:ApiKeys or Api:AdminKeys.",
            };
            return Task.CompletedTask;
        })
        .AddOperationTransformer((operation, context, _) =>
        {
            // Endpoints behind a scope's policy (named like the scope) say so, with either way of sending the key. OpenAPI 3.1
            // lets a requirement of a non-OAuth scheme list role names: the scope is that role.
            var scope = context.Description.ActionDescriptor.EndpointMetadata.OfType<Microsoft.AspNetCore.Authorization.IAuthorizeData>()
                .Select(a => a.Policy).LastOrDefault(p => p is not null);
            if (scope is not null)
            {
                operation.Security =
                [
                    new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", context.Document)] = [scope] },
                    new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("apiKey", context.Document)] = [scope] },
                ];
                operation.Description = $"Scope: {scope}. {operation.Description}".TrimEnd();
            }

            return Task.CompletedTask;
        })
        .AddFleetRequestExamples());
}
