using System;
using System.IO;
using System.Text.Json;

namespace PeerLink.Testing;

/// <summary>Finds and parses the checked-in test data (see TestData/README.md for its origin).</summary>
internal static class TestFiles
{
    public static string PathOf(string relativePath) => Path.Combine(AppContext.BaseDirectory, "TestData", relativePath);

    public static JsonDocument Json(string relativePath) => JsonDocument.Parse(File.ReadAllBytes(PathOf(relativePath)));

    public static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace("-", string.Empty, StringComparison.Ordinal));
}
