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
                "Submit tasks to the Fleet worker fleet and watch them. Writes need an API key (Authorization: Bearer KEY, or X-Api-Key: KEY); " +
                "reads are open unless Api:ReadsRequireKey is set. Errors are application/problem+json.";
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "An API key from Api:ApiKeys.",
            };
            document.Components.SecuritySchemes["apiKey"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = ApiKeyAuthenticationHandler.HeaderName,
                Description = "An API key from Api:ApiKeys.",
            };
            return Task.CompletedTask;
        })
        .AddOperationTransformer((operation, context, _) =>
        {
            // Endpoints behind the API-key policy say so, with either way of sending the key.
            if (context.Description.ActionDescriptor.EndpointMetadata.OfType<Microsoft.AspNetCore.Authorization.IAuthorizeData>().Any())
            {
                operation.Security =
                [
                    new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", context.Document)] = [] },
                    new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("apiKey", context.Document)] = [] },
                ];
            }

            return Task.CompletedTask;
        }));
}
