/** The docker:// transport against a basic docker-registry. */
import { dockerTransportSuite } from "./docker-suite.js";

dockerTransportSuite("basic");
